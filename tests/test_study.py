"""The small-scale study (notebook 09a) end to end on the CPU, through the GPU runbook's `study` step
run here as its tiny dry run (so a lent GPU is never spent on set-up): `arclf study train` for the
four models side by side, each writing its learning curve, weights and resumable state, then
`arclf study report`. One run serves every check, to keep the suite short."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _env(**kw):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', MPLBACKEND='Agg', **kw)
    env['PATH'] = str(Path(sys.executable).parent) + os.pathsep + env.get('PATH', '')
    return env


def _arclf(*args):
    return subprocess.run([sys.executable, '-m', 'arclf.cli', *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(sys.platform != 'linux', reason='the runbook is a bash script')
def test_study_through_the_gpu_runbook_dry_run(tmp_path):
    out, runs = tmp_path / 'out', tmp_path / 'runs'
    env = _env(OUT=str(out), STUDY_RUNS=str(runs), ARCLF_STUDY_TINY='1')
    r = subprocess.run(['bash', 'tools/gpu_run.sh', 'study', 'fashion_mnist'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rec = json.loads((out / 'results/training/fashion_mnist/curves.json').read_text())
    assert list(rec['curves']) == ['randar', 'randar_raster', 'dit', 'sit']
    d = runs / 'fashion_mnist'
    for name, c in rec['curves'].items():
        # 128 training images (32 more held out), 4 steps an epoch, 2 epochs: points at 2, 4, 8,
        # unless the curve converged first
        steps = [p['step'] for p in c['points']]
        assert steps == [2, 4, 8][: len(steps)] and steps, name
        assert len(steps) == 3 or c['converged'], name
        assert c['flops_per_sample'] > 0 and c['points'][0]['images'] == 16
        # scored with the study's one order (RandAR); the dry run's 2 timesteps (DiT, SiT)
        assert c['points'][0]['n'] == (2 if name in ('dit', 'sit') else 1), name
        assert (out / 'runs/fashion_mnist' / f'{name}.json').exists()
        assert (d / f'{name}.pt').exists() and (d / f'{name}_final.pt').exists()
        # the study's recipe, each model's own order
        key = json.loads(torch.load(d / f'{name}.ckpt', weights_only=True)['key'])
        assert (key['schedule'], key['lr'], key['ema'], key['bs']) == ('constant', 0.001, 0.999, 32)
        if name.startswith('randar'):
            assert key['order'] == ('raster' if name == 'randar_raster' else 'random')
    md = (out / 'results/training/fashion_mnist/README.md').read_text()
    assert '| step | epochs |' in md and 'randar_raster' in md
    assert (out / 'results/training/fashion_mnist/curves.png').exists()
    # the same command with another recipe is refused, not continued
    tiny = ['--n-train', '128', '--n-valid', '32', '--bs', '32', '--epochs', '2',
            '--curve-first', '2', '--curve-images', '16', '--log-every', '0']
    r = _arclf('study', 'train', 'dit', '--runs', str(runs), *tiny, '--lr', '0.01')
    assert r.returncode == 2 and 'different run' in r.stderr, r.stderr[-2000:]
    # more epochs continue a constant-rate run only if its warmup was not cut by the cap (a tenth
    # of the run): 8 steps had none, 12 would have one
    r = _arclf('study', 'train', 'dit', '--runs', str(runs), *tiny, '--curve-n', '2',
               '--epochs', '3')
    assert r.returncode == 2 and 'its warmup was 0 steps and would be 1 now' in r.stderr, (
        r.stderr[-2000:])
    r = _arclf('study', 'report', str(tmp_path / 'nothing'), '--out', str(tmp_path / 'x'))
    assert r.returncode == 2 and 'no learning curves' in r.stderr
    # the runs' latest points shipped (fp16) into a weights folder found first ($ARCLF_WEIGHTS):
    # `arclf eval` then scores with them, and the record says how long they were trained
    w = tmp_path / 'weights'
    r = _arclf('study', 'ship', str(d), '--dest', str(w))
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in w.glob('*.pt')) == [
        'dit_fmnist.pt', 'randar_fmnist.pt', 'randar_fmnist_raster.pt', 'sit_fmnist.pt']
    from arclf.core import model_meta, trained_epochs
    m = model_meta(w / 'randar_fmnist_raster.pt')
    last = rec['curves']['randar_raster']['points'][-1]
    assert trained_epochs(m) == last['epochs'] and m['recipe']['order'] == 'raster'
    env = _env(ARCLF_WEIGHTS=str(w))
    r = subprocess.run([sys.executable, '-m', 'arclf.cli', 'eval', '--clf', 'raster', '--n', '1',
                        '--n-per-class', '1', '--out', str(tmp_path / 'ev.json')], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ev = json.loads((tmp_path / 'ev.json').read_text())
    assert ev['epochs'] == last['epochs'], 'the weights shipped to $ARCLF_WEIGHTS were not used'
