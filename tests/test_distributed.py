"torchrun with the gloo backend: 2 CPU processes must train and evaluate exactly like one."
import os, subprocess, sys
from pathlib import Path
import torch, pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT/'tests'/'ddp_worker.py'

def run(args, tmp, nproc=None):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, str(WORKER)] if nproc is None else \
          [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', str(WORKER)]
    p = subprocess.run(cmd + args, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_two_processes_match_one(mode, tmp_path):
    run([mode, 'one.pt'], tmp_path); run([mode, 'two.pt'], tmp_path, nproc=2)
    a, b = torch.load(tmp_path/'one.pt'), torch.load(tmp_path/'two.pt')
    assert (a['world'], b['world']) == (1, 2)
    if mode == 'train':
        assert len(a['losses']) == len(b['losses']) == 18
        # rank 0 saw only its half of each global batch (so its losses differ) ...
        assert max(abs(x - y) for x, y in zip(a['losses'], b['losses'])) > 1e-4
        # ... yet the averaged gradients make the weights those of one process on the whole batch
        for k in a['params']: torch.testing.assert_close(a['params'][k], b['params'][k], rtol=1e-5, atol=1e-6)
    else:
        assert not torch.isnan(b['scores']).any()
        torch.testing.assert_close(a['scores'], b['scores'], rtol=1e-5, atol=1e-5)
