"""Run by tests/test_distributed.py, once as a plain process and once under torchrun (2 CPU
processes, gloo).
    python tests/ddp_worker.py train|eval|interrupt|resume OUT.pt
    python tests/ddp_worker.py ablations OUT_FOLDER"""
import sys
import torch
from torch import nn
from arclf.core import TensorLoader, fit_model
from arclf.training import setup_distributed, scale_cbs, is_main
from arclf.scorer import RandARClassifier, evaluate
from arclf.randar import randar_fmnist

mode, out = sys.argv[1], sys.argv[2]
rank, world, dev = setup_distributed()
torch.set_num_threads(1)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def loss(self, b):
        x, y = b
        return ((self.net(x).squeeze(-1) - y) ** 2).mean()


if mode == 'ablations':  # the shipped model against a tiny variant trained here (out: a folder)
    from pathlib import Path
    from arclf.ablations import ablations
    tiny = dict(base=dict(weights='randar_fmnist'),
                small=dict(train=dict(n_train=256, bs=64, epochs=1, n_layer=1, dim=32, n_head=2)))
    res = ablations(variants=tiny, out=Path(out) / 'results', runs=Path(out) / 'runs',
                    n_per_class=2, K=2, ks=(1, 2), noise_n_per_class=1, noise_K=1,
                    noise_variants=('base',), flip_variants=('base',), flip_targets=(0.1,),
                    progress=False, table8=None)
    torch.save({k: res[k] for k in ('rules', 'noise', 'flip')} | {'world': world},
               Path(out) / f'rank{rank}.pt')
elif mode == 'train':
    torch.manual_seed(0)
    model = MLP()
    X = torch.randn(96, 8, generator=torch.Generator().manual_seed(1))
    y = X[:, 0] * X[:, 1]
    learn = fit_model(model, TensorLoader(X, y, bs=16, seed=3), 3, lr=0.05, warmup=2,
                      device='cpu', cbs=scale_cbs('cpu'))
    import gc
    from torch.nn.parallel import DistributedDataParallel
    gc.collect()  # the DDP wrapper must be gone once the fit ends, not left to shutdown
    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    if is_main():
        params = {k: v.clone() for k, v in model.state_dict().items()}
        torch.save({'params': params, 'losses': learn.step_losses, 'world': world,
                    'ddp_alive': alive}, out)
else:
    torch.manual_seed(0)
    m = randar_fmnist(vocab_size=32, dim=32, n_layer=2, n_head=2).eval()
    x = torch.randint(0, 32, (7, 49), generator=torch.Generator().manual_seed(2))
    y = torch.arange(7) % 3
    clf = RandARClassifier(m, chunk=5)
    kw = dict(n=3, classes=[0, 1, 2], bs=2, seed=5, progress=False)
    if mode == 'eval':
        r = evaluate(clf, (x, y), **kw)
        if is_main():
            torch.save({'scores': r['scores'], 'world': world}, out)
    else:  # interrupt: every rank stops after its first batch; resume: one process finishes
        score, scored = clf.score, []

        def counted(z, classes, samples, **k):
            if mode == 'interrupt' and scored:
                sys.exit(3)
            scored.append(len(classes))
            return score(z, classes, samples, **k)

        clf.score = counted  # an instance attribute: the evaluation key is unchanged
        r = evaluate(clf, (x, y), out=out, save_every=1, **kw)
        torch.save({'scores': r['scores'], 'scored': sum(scored), 'world': world}, 'resumed.pt')
