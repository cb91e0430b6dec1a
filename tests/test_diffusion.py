"Integration tests of arclf.diffusion: official-layout loading, schedule identities, weightings, the classifier, bad input."
import json, math
from pathlib import Path
import pytest, torch
from arclf.core import load_strict, layout
from arclf.diffusion import *

LAYOUTS = Path(__file__).resolve().parents[2]/'shared'/'checkpoint-layouts'

def _official(name):
    f = LAYOUTS/name
    if not f.exists(): pytest.skip(f'{f} not available')
    return json.loads(f.read_text())

pytestmark = pytest.mark.filterwarnings('ignore:.*meta parameter')

def _empty_sd(lay): return {k: torch.empty(s) for k, s in lay.items()}   # official layout, no values needed

@pytest.mark.parametrize('preset,fname', [('DiT_XL_2', 'dit_xl2_keys.json'), ('SiT_XL_2', 'sit_xl2_keys.json')])
def test_official_layouts_load_strictly(preset, fname):
    lay = _official(fname)
    m = meta_model(preset)
    assert layout(m) == lay
    sd = _empty_sd(lay)
    load_strict(m, sd)                     # released files: bare EMA state dicts
    load_strict(m, {'ema': sd, 'model': sd, 'opt': {}, 'args': None})   # train.py checkpoints: the "ema" entry is used
    bad = dict(sd); bad.pop('final_layer.linear.weight')
    with pytest.raises(ValueError, match='missing'): load_strict(m, bad)
    # SiT-XL/2-256 needs learn_sigma=True: a preset without it has a 16-wide final layer and must refuse the file
    with pytest.raises(ValueError, match='final_layer.linear'): load_strict(meta_model(preset, learn_sigma=False), sd)

@pytest.mark.parametrize('preset,fname', [('DiT_XL_2', 'dit_xl2_keys.json'), ('SiT_XL_2', 'sit_xl2_keys.json')])
def test_official_values_land(preset, fname):
    "A real-valued strict load (the official layout cut to one block, to keep the test small): every tensor arrives."
    from arclf.core import random_state_dict
    lay = {k: v for k, v in _official(fname).items() if not k.startswith('blocks.') or k.startswith('blocks.0.')}
    sd = random_state_dict(lay, torch.Generator().manual_seed(0))
    m = load_strict(PRESETS[preset](depth=1), {'ema': sd})
    got = m.state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    x = torch.randn(1, 4, 32, 32)
    t = torch.tensor([500]) if preset == 'DiT_XL_2' else torch.tensor([0.5])
    assert m.eval()(x, t, torch.tensor([1000])).shape == (1, 8, 32, 32)      # the null class row exists

def test_small_presets_round_trip(tmp_path):
    from arclf.core import save_pretrained, load_pretrained
    m = dit_fmnist(depth=1)
    save_pretrained(m, tmp_path/'d.pt')
    m2 = load_pretrained(DiT, tmp_path/'d.pt')
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([1, 900]), torch.tensor([0, 9])
    torch.testing.assert_close(m.eval()(x, t, y), m2(x, t, y))
    with pytest.raises(ValueError, match='layout'): load_strict(sit_fmnist(depth=2), tmp_path/'d.pt')

def test_q_sample_and_eps_from_v():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(DDPM.q_sample(x0, t, eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    tau = torch.tensor([0.01, 0.3, 0.7, 0.99])
    xt = sit_interp(x0, tau, eps)
    torch.testing.assert_close(xt, tau.view(-1, 1, 1, 1) * x0 + (1 - tau.view(-1, 1, 1, 1)) * eps)
    torch.testing.assert_close(eps_from_v(xt, tau, x0 - eps), eps, atol=1e-5, rtol=1e-5)
    v_hat = x0 - eps + 0.1 * torch.randn(4, 1, 8, 8, generator=g)    # ε̂ − ε = τ (v − v̂)
    e_eps = ((eps_from_v(xt, tau, v_hat) - eps) ** 2).flatten(1).sum(1)
    e_v = ((v_hat - (x0 - eps)) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(e_eps, tau ** 2 * e_v, atol=1e-5, rtol=1e-4)

def test_weightings_closed_forms():
    t = torch.arange(1, 1000)
    snr = DDPM.snr(t); snr_prev = DDPM.snr(t - 1)
    torch.testing.assert_close(weighting('elbo', DDPM, t), 0.5 * (snr_prev / snr - 1))
    torch.testing.assert_close(weighting('x0', DDPM, t), 1 / snr)
    torch.testing.assert_close(weighting('v', DDPM, t), 1 + 1 / snr)
    torch.testing.assert_close(weighting('min_snr5', DDPM, t), torch.minimum(snr, torch.tensor(5.)) / snr)
    torch.testing.assert_close(weighting('fm_ot', DDPM, t), snr.rsqrt() - snr_prev.rsqrt())
    torch.testing.assert_close(weighting('constant', DDPM, t), torch.ones(999, dtype=torch.float64))
    assert math.isclose(weighting('elbo', DDPM, torch.tensor([2])).item(), 0.318, rel_tol=2e-3)
    assert torch.isfinite(weighting('elbo', DDPM, torch.tensor([0]))).all()
    with pytest.raises(ValueError, match='unknown weighting'): weighting('snr2', DDPM, t)

def test_dc_schedules():
    for name, (M, ns, keep, fw) in DC_SCHEDULES.items():
        assert dc_pruning_schedule(M, ns, keep)['forwards'] == fw, name
    with pytest.raises(ValueError, match='keep 1'): dc_pruning_schedule(10, (5, 10), (3, 2))

@pytest.mark.parametrize('kind', ['dit', 'sit'])
def test_oracle_ranks_true_class_first(kind):
    x0 = torch.rand(1, 1, 28, 28) * 2 - 1
    cfg = DiTConfig(input_size=28, patch_size=4, in_channels=1, num_classes=10, learn_sigma=False, kind=kind)
    clf = DiffusionClassifier(OracleEps(cfg, x0, 3), step=4, chunk=37)
    s = clf.sample_scores(x0, torch.arange(10), n=20, generator=torch.Generator().manual_seed(1))
    assert s.shape == (1, 10, 20) and s.dtype == torch.float32
    assert (s[0].argmax(0) == 3).all()
    if kind == 'sit': assert clf.timesteps(3).is_floating_point()

def test_noise_shared_across_classes_and_prefix_consistent():
    m = dit_fmnist(depth=1, hidden_size=32, num_heads=2)
    clf = DiffusionClassifier(m, step=4, chunk=7)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    z = clf.prepare(x); smp = clf.draw(z, 6, torch.Generator().manual_seed(0))
    assert smp['t'].shape == (2, 6) and smp['noise'].shape == (2, 6, 1, 28, 28)
    a = clf.score(z, torch.tensor([[1, 2, 3], [4, 5, 6]]), smp)
    b = clf.score(z, torch.tensor([[3, 2], [6, 4]]), {k: v[:, :4] for k, v in smp.items()})
    torch.testing.assert_close(b[:, 0], a[:, 2, :4][[0, 1]] if False else torch.stack([a[0, 2, :4], a[1, 2, :4]]))
    torch.testing.assert_close(b[:, 1], torch.stack([a[0, 1, :4], a[1, 0, :4]]))

def test_bad_input_messages():
    clf = DiffusionClassifier(dit_fmnist(depth=1, hidden_size=32, num_heads=2))
    with pytest.raises(ValueError, match='channel'): clf.prepare(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match='28x28'): clf.prepare(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match='NaN'): clf.prepare(torch.full((1, 1, 28, 28), float('nan')))
    with pytest.raises(ValueError, match='un-normalized'): clf.prepare(torch.rand(1, 1, 28, 28) * 255)
    with pytest.raises(ValueError, match='class ids'): clf.sample_scores(torch.zeros(1, 1, 28, 28), torch.tensor([3, 10]), 2)
    with pytest.raises(ValueError, match="'v'"): DiffusionClassifier(dit_fmnist(depth=1), space='v')
    with pytest.raises(TypeError, match='continuous t'): sit_fmnist(depth=1)(torch.zeros(1, 1, 28, 28), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match='one of n_t'): timestep_grid()
