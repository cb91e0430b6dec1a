"""The scorer benchmark (`arclf bench scorer`, notebook 07c) and the GPU runbook's bench step, on
the CPU.

Speed is never asserted: these tests check that the benchmark runs through `sample_scores` at a
tiny shape, that its record says what it measured (shape and reduction, FLOPs, projection, speed
ratio), and that the command lines of `tools/gpu_run.sh bench` parse: its tiny dry run (run for
real) and its full-shape GPU lines (parsed only).
"""
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _env(**kw):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', **kw)
    # the runbook calls `python3`: make it this interpreter, whose environment holds arclf
    env['PATH'] = str(Path(sys.executable).parent) + os.pathsep + env.get('PATH', '')
    return env


def test_flop_counts_of_the_papers_models():
    from arclf.core import create_model
    from arclf.bench import randar_flops, dit_flops, forward_flops

    with torch.device('meta'):  # full shapes, no memory
        dit, rl = create_model('DiT_XL_2'), create_model('randar_l')
    # the DiT paper gives 118.6 Gflops (multiply-adds) for DiT-XL/2 at 256 px
    assert abs(dit_flops(dit) / 2e9 - 118.6) < 0.2
    c = rl.cfg
    d, f, L, N = c.dim, c.ffn_hidden, 2 * c.n_tokens, c.n_tokens
    by_hand = (2 * c.n_layer * (4 * d * d + 3 * d * f) * L  # qkv + wo, SwiGLU on 512 rows
               + 2 * d * c.vocab_size * N  # the output head on the 256 prediction rows
               + 2 * c.n_layer * L * L * d)  # causal QKᵀ and AV
    assert randar_flops(rl) == forward_flops(rl) == by_hand
    assert 330e9 < by_hand < 345e9  # RandAR-L: about 337 GFLOP per scored sequence
    assert randar_flops(rl, steps=16) < randar_flops(rl) / 16  # a prefix of 16 of 256 steps


def test_scorer_bench_tiny_cpu(tmp_path):
    from arclf.bench import scorer_benchmarks

    out = tmp_path / 'scorer' / 'bench_cpu.json'
    scorer_benchmarks(out, models=('randar_l', 'dit_xl2'), shape='tiny', device='cpu', reps=1)
    rec = json.loads(out.read_text())
    assert rec['device'] == 'cpu' and rec['bf16_peak'] is None and 'run_info' in rec
    rows = {r['key']: r for r in rec['rows']}
    assert set(rows) == {'randar_l', 'dit_xl2'}
    for key, r in rows.items():
        assert r['sequences_per_s'] > 0 and r['tflops'] > 0 and r['peak_fraction'] is None
        assert math.isfinite(r['projected_s_per_image']) and r['projected_s_per_image'] > 0
        # a tiny shape is labelled as such, with what was cut
        assert r['shape'] == 'tiny' and r['reduced'] and r['projection'] == 'flop-scaled'
        assert 'blocks' in r['reduction'] and '2 of 1000 classes' in r['reduction']
        assert r['dtype'] == 'fp32' and r['chunk'] == 'auto' and r['chunk_used'] >= 1
        assert r['compile'] is False and r['gflop_per_sequence'] < r['gflop_per_sequence_full']
    protocol = dict(classes=1000, per_class=20, sequences_per_image=20000)
    assert rows['randar_l']['protocol'] == protocol
    assert rows['dit_xl2']['protocol']['sequences_per_image'] == 250_000
    s = rec['speed_ratio']
    assert math.isfinite(s['dit_over_randar']) and s['dit_over_randar'] > 0
    assert s['dit_over_randar'] == s['dit_xl2_s_per_image'] / s['randar_l_s_per_image']
    assert rec['target']['met'] is None  # reported on an H100/H200 only, never asserted
    md = out.with_suffix('.md').read_text()
    assert '| RandAR-L | tiny | fp32 |' in md and 'Made by' in md
    # a ratio of throughputs with random weights: said to be one, never called a speed-up
    assert 'apart. Throughput only' in md and 'faster' not in md
    assert md.startswith('# Scorer throughput of the full-scale models (beyond the paper)')


def test_scorer_bench_rows_per_chunk():
    from arclf.bench import scorer_benchmarks

    r = scorer_benchmarks(models=('dit_xl2',), shape='tiny', device='cpu', chunks=('1', 'auto'),
                          reps=1)
    assert [(o['chunk'], o['chunk_used']) for o in r['rows']] == [(1, 1), ('auto', 512)]
    assert r['speed_ratio'] is None  # no RandAR-L in this run


def test_bench_scorer_cli(tmp_path):
    cli = [sys.executable, '-m', 'arclf.cli', 'bench', 'scorer']
    p = subprocess.run(cli + ['--help'], capture_output=True, text=True, cwd=ROOT, env=_env())
    assert p.returncode == 0
    for opt in ('--models', '--shape', '--dtype', '--chunks', '--compile', '--classes', '--n',
                '--reps'):
        assert opt in p.stdout, opt
    for bad in (['--chunks', '64,0'], ['--models', 'randar_l,vit'], ['--shape', 'huge']):
        p = subprocess.run(cli + bad + ['--out', str(tmp_path / 'b.json')], capture_output=True,
                           text=True, cwd=ROOT, env=_env())
        assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr
    assert not (tmp_path / 'b.json').exists()


def test_gpu_runbook_bench_dry_run(tmp_path):
    "`ARCLF_BENCH_TINY=1 bash tools/gpu_run.sh bench`: every step at a tiny shape on this CPU."
    out = tmp_path / 'out'
    p = subprocess.run(['bash', 'tools/gpu_run.sh', 'bench'], capture_output=True, text=True,
                       cwd=ROOT, env=_env(OUT=str(out), ARCLF_BENCH_TINY='1'), timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = sorted(str(f.relative_to(out)) for f in out.rglob('*') if f.is_file())
    assert files == ['bench.log', 'results/scorer/bench_tiny.json', 'results/scorer/bench_tiny.md',
                     'results/scorer/bench_tiny_fp32.json', 'results/scorer/bench_tiny_fp32.md',
                     'results/training/bench_tiny.json']
    assert len(files) <= 8  # what a device call brings back from $OUT
    main = json.loads((out / 'results/scorer/bench_tiny.json').read_text())
    # the dry run's scorer step: the two models of the speed ratio, 3 chunk sizes
    assert len(main['rows']) == 2 * 3 and main['speed_ratio'] is not None
    fp32 = json.loads((out / 'results/scorer/bench_tiny_fp32.json').read_text())
    assert {r['dtype'] for r in fp32['rows']} == {'fp32'}
    assert '== failed' not in (out / 'bench.log').read_text()


def test_gpu_runbook_full_lines_parse(tmp_path):
    """The GPU lines of the runbook (full shapes, CUDA) parse: run in a copy, with a `python3` that
    parses `arclf` command lines instead of running them and skips the wheel install."""
    (tmp_path / 'tools').mkdir()
    (tmp_path / 'tools' / 'gpu_run.sh').write_text((ROOT / 'tools' / 'gpu_run.sh').read_text())
    (tmp_path / '.gpu' / 'whl').mkdir(parents=True)
    (tmp_path / '.gpu' / 'whl' / 'fake-0-py3-none-any.whl').write_text('')
    shim = tmp_path / 'python3'
    shim.write_text(
        f'#!{sys.executable}\n'
        'import subprocess, sys\n'
        # this checkout's arclf, whatever the runbook puts on PYTHONPATH (CI once found none)
        f'sys.path.insert(0, {str(ROOT)!r})\n'
        'a = sys.argv[1:]\n'
        "if a[:2] == ['-m', 'arclf.cli']:\n"
        '    from arclf.cli import parser\n'
        "    print('parsed', sorted(vars(parser().parse_args(a[2:])).items()))\n"
        "elif a[:2] != ['-m', 'pip']:\n"
        '    sys.exit(subprocess.call([sys.executable, *a]))\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / 'out'
    p = subprocess.run(['bash', 'tools/gpu_run.sh', 'bench'], capture_output=True, text=True,
                       cwd=tmp_path, env=_env(OUT=str(out), PYTHON=str(shim)), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    parsed = [line for line in p.stdout.splitlines() if line.startswith('parsed')]
    assert len(parsed) == 4, p.stdout  # scorer, training, scorer fp32, scorer compile
    assert all("('device', 'cuda')" in line for line in parsed)
    assert "('shape', 'full')" in parsed[0] and "('chunks', '64,256,auto')" in parsed[0]
    assert "('full', True)" in parsed[1] and "('dtype', 'fp32')" in parsed[2]
    assert "('compile', True)" in parsed[3]
