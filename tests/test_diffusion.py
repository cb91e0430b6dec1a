"""Integration tests of arclf.diffusion and the diffusion classifier: official layouts, schedules,
weightings, bad input."""

import json
import math
from pathlib import Path
import pytest
import torch
from torch import nn, Tensor
from arclf.core import (
    create_model,
    load_strict,
    layout,
    random_state_dict,
    save_pretrained,
    load_pretrained,
)
from arclf.diffusion import (
    DDPM,
    DiT,
    DiTConfig,
    dit_fmnist,
    sit_fmnist,
    sit_interp,
    eps_from_v,
    weighting,
    timestep_grid,
)
from arclf.classifiers import DiffusionClassifier, DC_SCHEDULES, dc_plan
from arclf.scorer import sample_scores, draw_samples, prune, evaluate

LAYOUTS = Path(__file__).resolve().parents[2] / 'shared' / 'checkpoint-layouts'
OFFICIAL = [('DiT_XL_2', 'dit_xl2_keys.json'), ('SiT_XL_2', 'sit_xl2_keys.json')]


def _official(name):
    f = LAYOUTS / name
    if not f.exists():
        pytest.skip(f'{f} not available')
    return json.loads(f.read_text())


pytestmark = pytest.mark.filterwarnings('ignore:.*meta parameter')


def _meta(name, **kw):
    "A registered model built on the meta device (shapes only: the XL models have 675M parameters)."
    with torch.device('meta'):
        return create_model(name, **kw)


def _randomized(m, seed=0):
    """Random weights everywhere (DiT zero-initializes its output and modulation layers: no class
    dependence)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m.eval()


def _empty_sd(lay):
    return {k: torch.empty(s) for k, s in lay.items()}  # official layout, no values needed


class OracleEps(nn.Module):
    """Test double for one image `x0`: the exact ε (DiT) or velocity (SiT) for class `y_true`, a
    biased one otherwise."""

    def __init__(self, cfg: DiTConfig, x0: Tensor, y_true: int, bias: float = 0.3):
        super().__init__()
        self.cfg, self.x0, self.y_true, self.bias = cfg, x0, y_true, bias
        self.dummy = nn.Parameter(torch.zeros(()))

    def predict(self, x_t, t, y):
        if self.cfg.kind == 'dit':
            a, s = DDPM.coefs(t, x_t.ndim, x_t.dtype, x_t.device)
            out = (x_t - a * self.x0) / s
        else:
            tt = t.to(x_t.dtype).view(-1, 1, 1, 1)
            eps = (x_t - tt * self.x0) / (1 - tt)
            out = self.x0 - eps
        return out + self.bias * (y != self.y_true).to(x_t.dtype).view(-1, 1, 1, 1)


@pytest.mark.parametrize('preset,fname', OFFICIAL)
def test_official_layouts_load_strictly(preset, fname):
    lay = _official(fname)
    m = _meta(preset)
    assert layout(m) == lay
    sd = _empty_sd(lay)
    load_strict(m, sd)  # released files: bare EMA state dicts
    load_strict(m, {'ema': sd, 'model': sd, 'opt': {}, 'args': None})  # train.py checkpoints
    bad = dict(sd)
    bad.pop('final_layer.linear.weight')
    with pytest.raises(ValueError, match='missing'):
        load_strict(m, bad)
    # SiT-XL/2-256 needs learn_sigma=True: a preset without it has a 16-wide final layer and must
    # refuse the file
    with pytest.raises(ValueError, match='final_layer.linear'):
        load_strict(_meta(preset, learn_sigma=False), sd)


def test_training_checkpoint_loads_its_ema_weights(tmp_path):
    m = dit_fmnist(depth=1)
    raw = random_state_dict(layout(m), torch.Generator().manual_seed(0))
    ema = random_state_dict(layout(m), torch.Generator().manual_seed(1))
    torch.save({'model': raw, 'ema': ema, 'opt': {}, 'args': None}, tmp_path / 'ckpt.pt')
    got = create_model('dit_fmnist', depth=1, pretrained=tmp_path / 'ckpt.pt').state_dict()
    assert all(torch.equal(got[k], ema[k]) for k in ema)


@pytest.mark.parametrize('preset,fname', OFFICIAL)
def test_official_values_land(preset, fname, tmp_path):
    """A real-valued strict load (the official layout cut to one block, to keep the test small):
    every tensor arrives."""
    lay = {
        k: v
        for k, v in _official(fname).items()
        if not k.startswith('blocks.') or k.startswith('blocks.0.')
    }
    sd = random_state_dict(lay, torch.Generator().manual_seed(0))
    m = load_strict(create_model(preset, depth=1), {'ema': sd})
    got = m.state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    torch.save(sd, tmp_path / 'one_block.pt')  # the same through create_model(pretrained=PATH)
    m2 = create_model(preset, depth=1, pretrained=tmp_path / 'one_block.pt')
    assert all(torch.equal(m2.state_dict()[k], v) for k, v in sd.items()) and not m2.training
    x = torch.randn(1, 4, 32, 32)
    t = torch.tensor([500]) if preset == 'DiT_XL_2' else torch.tensor([0.5])
    assert m.eval()(x, t, torch.tensor([1000])).shape == (1, 8, 32, 32)  # the null class row exists


def test_small_presets_round_trip(tmp_path):
    m = dit_fmnist(depth=1)
    save_pretrained(m, tmp_path / 'd.pt', family='dit', preset='dit_fmnist')
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([1, 900]), torch.tensor([0, 9])
    for m2 in (
        load_pretrained(DiT, tmp_path / 'd.pt'),
        create_model('dit_fmnist', pretrained=tmp_path / 'd.pt'),
    ):
        torch.testing.assert_close(m.eval()(x, t, y), m2(x, t, y))
        assert m2.meta == {'family': 'dit', 'preset': 'dit_fmnist'} and m2.cfg.depth == 1
    with pytest.raises(ValueError, match='layout'):
        load_strict(sit_fmnist(depth=2), tmp_path / 'd.pt')


def test_shipped_small_models_load():
    for name, kind in (('dit_fmnist', 'dit'), ('sit_fmnist', 'sit')):
        m = create_model(name, pretrained=True)
        assert m.cfg.kind == kind and (m.cfg.in_channels, m.cfg.input_size, m.cfg.num_classes) == (
            1,
            28,
            10,
        )
        assert m.meta['family'] == kind and all(p.dtype == torch.float32 for p in m.parameters())
        assert not torch.equal(
            m.final_layer.linear.weight, torch.zeros_like(m.final_layer.linear.weight)
        )


def test_q_sample_and_eps_from_v():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0)[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(DDPM.q_sample(x0, t, eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    tau = torch.tensor([0.01, 0.3, 0.7, 0.99])
    xt = sit_interp(x0, tau, eps)
    torch.testing.assert_close(xt, tau.view(-1, 1, 1, 1) * x0 + (1 - tau.view(-1, 1, 1, 1)) * eps)
    torch.testing.assert_close(eps_from_v(xt, tau, x0 - eps), eps, atol=1e-5, rtol=1e-5)
    v_hat = x0 - eps + 0.1 * torch.randn(4, 1, 8, 8, generator=g)  # ε̂ − ε = τ (v − v̂)
    e_eps = ((eps_from_v(xt, tau, v_hat) - eps) ** 2).flatten(1).sum(1)
    e_v = ((v_hat - (x0 - eps)) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(e_eps, tau**2 * e_v, atol=1e-5, rtol=1e-4)


def test_weightings_closed_forms():
    t = torch.arange(1, 1000)
    snr = DDPM.snr(t)
    snr_prev = DDPM.snr(t - 1)
    torch.testing.assert_close(weighting('elbo', DDPM, t), 0.5 * (snr_prev / snr - 1))
    torch.testing.assert_close(weighting('x0', DDPM, t), 1 / snr)
    torch.testing.assert_close(weighting('v', DDPM, t), 1 + 1 / snr)
    torch.testing.assert_close(
        weighting('min_snr5', DDPM, t), torch.minimum(snr, torch.tensor(5.0)) / snr
    )
    torch.testing.assert_close(weighting('fm_ot', DDPM, t), snr.rsqrt() - snr_prev.rsqrt())
    torch.testing.assert_close(weighting('constant', DDPM, t), torch.ones(999, dtype=torch.float64))
    assert math.isclose(weighting('elbo', DDPM, torch.tensor([2])).item(), 0.318, rel_tol=2e-3)
    assert torch.isfinite(weighting('elbo', DDPM, torch.tensor([0]))).all()
    with pytest.raises(ValueError, match='unknown weighting'):
        weighting('snr2', DDPM, t)


def test_dc_schedules():
    for name, (M, ns, keep, fw) in DC_SCHEDULES.items():
        p = dc_plan(M, ns, keep)
        assert p['forwards'] == fw, name
        assert [k for _, k in p['plan']] == list(keep), name
        assert p['plan'][-1][0] == len(p['timesteps']) == len(set(p['timesteps'])) == max(ns), name
        assert all(0 <= t < 1000 for t in p['timesteps']), name
    with pytest.raises(ValueError, match='keep 1'):
        dc_plan(10, (5, 10), (3, 2))
    with pytest.raises(ValueError, match='same length'):
        dc_plan(10, (5, 10), (1,))


def test_dc_plan_drives_prune():
    """Diffusion Classifier's schedule through `prune`: the forwards counted equal the plan's, stage
    by stage."""
    m = _randomized(dit_fmnist(depth=1, hidden_size=32, num_heads=2))
    p = dc_plan(10, (4, 8), (3, 1))
    clf = DiffusionClassifier(m, timesteps=p['timesteps'], chunk=64)
    assert clf.timesteps(8).tolist() == p['timesteps'], 'explicit timesteps are used in their order'
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    r = prune(clf, x, list(range(10)), p['plan'])
    assert (r['forwards'] == p['forwards']).all() and p['forwards'] == 10 * 4 + 3 * 4
    full = sample_scores(clf, x, list(range(10)), 8)  # the winner's score is its full lower bound
    win = r['pred']
    assert full.std(1).mean() > 1e-3, 'classes must differ for the comparison to mean anything'
    torch.testing.assert_close(
        r['scores'].gather(1, win[:, None])[:, 0], full.mean(-1).gather(1, win[:, None])[:, 0]
    )


@pytest.mark.parametrize('kind', ['dit', 'sit'])
def test_oracle_ranks_true_class_first(kind):
    x0 = torch.rand(1, 1, 28, 28) * 2 - 1
    cfg = DiTConfig(
        input_size=28, patch_size=4, in_channels=1, num_classes=10, learn_sigma=False, kind=kind
    )
    clf = DiffusionClassifier(OracleEps(cfg, x0, 3), step=4, chunk=37)
    s = sample_scores(clf, x0, torch.arange(10), n=20, seed=1)
    assert s.shape == (1, 10, 20) and s.dtype == torch.float32
    assert (s[0].argmax(0) == 3).all()
    assert clf.predict(x0, n=5).tolist() == [3]
    t = clf.timesteps(3)
    assert t.is_floating_point() == (kind == 'sit'), 'SiT samples continuous τ, DiT integer steps'


def test_noise_shared_across_classes_and_prefix_consistent():
    m = _randomized(dit_fmnist(depth=1, hidden_size=32, num_heads=2))
    clf = DiffusionClassifier(m, step=4, chunk=7)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    z = clf.prepare(x)
    one = clf.draw(z[:1], 6, torch.Generator().manual_seed(0))
    assert one['t'].shape == (1, 6) and one['noise'].shape == (
        1,
        6,
        1,
        28,
        28,
    ), 'draw is for ONE image'
    smp = draw_samples(clf, z, 6, seed=0, indices=[0, 1])
    assert smp['t'].shape == (2, 6) and smp['noise'].shape == (2, 6, 1, 28, 28)
    assert not torch.equal(smp['noise'][0], smp['noise'][1])
    a = clf.score(z, torch.tensor([[1, 2, 3], [4, 5, 6]]), smp)
    b = clf.score(z, torch.tensor([[3, 2], [6, 4]]), {k: v[:, :4] for k, v in smp.items()})
    torch.testing.assert_close(b[:, 0], torch.stack([a[0, 2, :4], a[1, 2, :4]]))
    torch.testing.assert_close(b[:, 1], torch.stack([a[0, 1, :4], a[1, 0, :4]]))
    # the same (t, ε) for every class: the same class twice gives identical columns
    s = sample_scores(clf, x, [5, 5, 6], n=4, seed=2)
    # (equal up to float rounding: the two copies may sit at different rows of a batched matmul)
    torch.testing.assert_close(s[:, 0], s[:, 1], rtol=1e-6, atol=1e-5)
    assert not torch.allclose(s[:, 0], s[:, 2])
    r = evaluate(
        clf, (x, torch.tensor([5, 6])), n=4, classes=[5, 5, 6], bs=1, seed=2, progress=False
    )
    torch.testing.assert_close(r['scores'], s, rtol=1e-5, atol=1e-4)


def test_bad_input_messages():
    clf = DiffusionClassifier(dit_fmnist(depth=1, hidden_size=32, num_heads=2))
    with pytest.raises(ValueError, match='channel'):
        clf.prepare(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match='28x28'):
        clf.prepare(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match='NaN'):
        clf.prepare(torch.full((1, 1, 28, 28), float('nan')))
    with pytest.raises(ValueError, match='un-normalized'):
        clf.prepare(torch.rand(1, 1, 28, 28) * 255)
    with pytest.raises(ValueError, match=r'\[0, 9\].*null class'):
        sample_scores(clf, torch.zeros(1, 1, 28, 28), torch.tensor([3, 10]), 2)
    with pytest.raises(ValueError, match="'v'"):
        DiffusionClassifier(dit_fmnist(depth=1), space='v')
    with pytest.raises(ValueError, match='unknown weighting'):
        DiffusionClassifier(dit_fmnist(depth=1), weighting='snr2')
    with pytest.raises(TypeError, match='continuous t'):
        sit_fmnist(depth=1)(torch.zeros(1, 1, 28, 28), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match='one of n_t'):
        timestep_grid()
