"torchrun with the gloo backend: 2 CPU processes must train and evaluate exactly like one."

import os, subprocess, sys
from pathlib import Path
import torch, pytest
from arclf.core import model_meta

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / 'tests' / 'ddp_worker.py'


def _env():
    "One thread a process; arclf imported from this checkout, whatever the install and the cwd."
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': path}


def run(args, tmp, nproc=None, **env_vars):
    env = {**_env(), **env_vars}
    cmd = (
        [sys.executable, str(WORKER)]
        if nproc is None
        else [
            sys.executable,
            '-m',
            'torch.distributed.run',
            '--standalone',
            f'--nproc_per_node={nproc}',
            str(WORKER),
        ]
    )
    p = subprocess.run(cmd + args, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def one_and_two(mode, tmp):
    "The worker's result as one process and as two torchrun processes."
    run([mode, 'one.pt'], tmp)
    run([mode, 'two.pt'], tmp, nproc=2)
    a, b = torch.load(tmp / 'one.pt'), torch.load(tmp / 'two.pt')
    assert (a['world'], b['world']) == (1, 2)
    return a, b


def test_two_processes_train_like_one(tmp_path):
    a, b = one_and_two('train', tmp_path)
    assert len(a['losses']) == len(b['losses']) == 18
    # rank 0 saw only its half of each global batch (so its losses differ) ...
    assert max(abs(x - y) for x, y in zip(a['losses'], b['losses'])) > 1e-4
    # ... yet the averaged gradients make the weights those of one process on the whole batch
    for k in a['params']:
        torch.testing.assert_close(a['params'][k], b['params'][k], rtol=1e-5, atol=1e-6)
    # and the DDP wrapper (whose reducer holds the process group) is freed when the fit ends:
    # left to interpreter shutdown, gloo could abort the finished rank
    assert b['ddp_alive'] == 0


def test_two_processes_evaluate_like_one(tmp_path):
    a, b = one_and_two('eval', tmp_path)
    assert b['scores'].shape == (7, 3, 3) and not torch.isnan(b['scores']).any()
    torch.testing.assert_close(a['scores'], b['scores'], rtol=1e-5, atol=1e-5)


def test_two_interrupted_processes_resume_in_one(tmp_path):
    """Partial results of any world size: two torchrun processes stop after their first batch;
    one process then finishes only the images neither scored, and equals an uninterrupted run."""
    run(['eval', 'one.pt'], tmp_path)
    with pytest.raises(AssertionError):  # both ranks exit with status 3 after a batch each
        run(['interrupt', 'scores.pt'], tmp_path, nproc=2)
    assert sorted(p.name for p in tmp_path.glob('*.part')) == [
        'scores.pt.rank0.part', 'scores.pt.rank1.part']
    run(['resume', 'scores.pt'], tmp_path)
    r, one = torch.load(tmp_path / 'resumed.pt'), torch.load(tmp_path / 'one.pt')
    assert r['scored'] == 3  # of 7 images, 4 were done by the two ranks (2 each)
    torch.testing.assert_close(r['scores'], one['scores'], rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob('*.part'))


def test_arclf_eval_under_torchrun(data_root, tmp_path):
    """`torchrun ... -m arclf.cli eval`: two processes split the images, one writes the result,
    and it equals one process's."""
    env = _env()
    args = ['-m', 'arclf.cli', 'eval', '--samples', '2', '--n-per-class', '2', '--out']
    for nproc, out in ((2, 'two.json'), (None, 'one.json')):
        launch = ['-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}']
        cmd = [sys.executable, *(launch if nproc else []), *args, str(tmp_path / out)]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
    import json

    two, one = (json.loads((tmp_path / f).read_text()) for f in ('two.json', 'one.json'))
    assert two['images'] == 20 and two['acc'] == one['acc']
    assert two['table2_row']['top1'] == one['table2_row']['top1']


def test_train_model_two_processes_match_one(data_root, tmp_path):
    """`arclf train` under torchrun: 2 gloo processes on half batches end with the weights of 1
    process on whole batches."""
    args = [
        'train',
        'randar',
        '--order',
        'raster',
        '--n-train',
        '256',
        '--bs',
        '64',
        '--device',
        'cpu',
        '--root',
        str(data_root),
        '--log-every',
        '0',
        '--cfg',
        'class_dropout_prob=0',
        '--cfg',
        'n_layer=2',
    ]
    # raster order and no dropout (the small preset has no other dropout): a loss without
    # randomness, so the runs can agree
    env = _env()
    for cmd, out in (
        ([sys.executable, '-m', 'arclf.cli'], 'one.pt'),
        (
            [
                sys.executable,
                '-m',
                'torch.distributed.run',
                '--standalone',
                '--nproc_per_node=2',
                '-m',
                'arclf.cli',
            ],
            'two.pt',
        ),
    ):
        p = subprocess.run(
            cmd + args + ['--out', str(tmp_path / out)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ('one.pt', 'two.pt'))
    ra, rb = a['meta']['record'], b['meta']['record']
    assert ra['steps'] == rb['steps'] == 4 and len(ra['loss_curve']) == len(rb['loss_curve']) == 4
    assert ra['loss_curve'] != rb['loss_curve']  # rank 0 logged the loss of its half batch only
    # the same weights up to fp32 reduction order (the gradient of 2 halves summed by gloo, not in
    # one batch); Adam divides each step by the gradient's own scale, so a weight whose gradient is
    # at that noise floor can move by up to a step's learning rate: allow 1 in 10,000 such weights
    # past the tolerance, none past 1e-4
    n = bad = 0
    for k in a['model']:
        x, y = a['model'][k].float(), b['model'][k].float()
        assert (x - y).abs().max() < 1e-4, k
        bad += int((~torch.isclose(x, y, rtol=1e-4, atol=1e-5)).sum())
        n += x.numel()
    assert bad <= n * 1e-4, (bad, n)


def test_ablations_under_torchrun(data_root, tmp_path):
    """`arclf ablations` under torchrun (as tools/small_scale.sh runs it): the variant is trained
    by both processes together, the images are split, every process ends with the same results,
    one writes them, and the shipped model's rows equal those of one process."""
    one, two = tmp_path / 'one', tmp_path / 'two'
    run(['ablations', str(one)], tmp_path, ARCLF_DATA=str(data_root))
    run(['ablations', str(two)], tmp_path, nproc=2, ARCLF_DATA=str(data_root))
    a, b0, b1 = (torch.load(f) for f in (one / 'rank0.pt', two / 'rank0.pt', two / 'rank1.pt'))
    assert (a['world'], b0['world'], b1['world']) == (1, 2, 2)
    keys = ('rules', 'noise', 'flip')
    assert {k: b0[k] for k in keys} == {k: b1[k] for k in keys}

    def base(r):
        return [(o['rule'], o['n'], o['acc']) for o in r['rules'] if o['variant'] == 'base']

    assert base(a) and base(a) == base(b0)
    # test-time latent noise is drawn per image, whichever process scores it
    for k in ('noise', 'flip'):
        assert [o['acc'] for o in a[k]] == [o['acc'] for o in b0[k]], k
    assert sorted(p.name for p in (two / 'results').iterdir()) == [
        'README.md', 'ablations.png', 'results.json']
    # the variant's record: 4 steps of the global batch of 64 (each process took half of it)
    meta = model_meta(two / 'runs' / 'ablations' / 'randar_fmnist_small.pt')
    assert meta['record']['steps'] == 256 // 64, meta['record']
