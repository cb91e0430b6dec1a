"Integration tests of arclf.tokenizer: official VQ-16 layout, strict loading, round trips, shipped weights, bad input."
import json, os
from pathlib import Path
import pytest, torch
from arclf.core import layout, layout_diff, random_state_dict, load_pretrained, atomic_save, save_pretrained, WEIGHTS_DIR
from arclf.tokenizer import VQModel, VQConfig, vq16, vq_config, vq_fmnist_s, encode_dataset, latent_noise_table, frechet_distance

LAYOUT = Path(__file__).resolve().parents[2]/'shared'/'checkpoint-layouts'/'vq16_keys.json'

@pytest.fixture(scope='module')
def official():
    "A state dict with exactly the official vq_ds16_c2i.pt layout (from the recorded key list when present)."
    if not LAYOUT.exists(): pytest.skip(f'official layout file {LAYOUT} not available')
    lay = json.loads(LAYOUT.read_text())
    return lay, random_state_dict(lay, torch.Generator().manual_seed(0))

def test_vq16_layout_is_official(official):
    lay, _ = official
    assert layout_diff(lay, layout(VQModel(VQConfig()))) == ''
    assert list(layout(VQModel(VQConfig()))) == list(lay)

def test_vq16_loads_official_file_strictly(official, tmp_path):
    lay, sd = official
    p = tmp_path/'vq_ds16_c2i.pt'
    atomic_save({'model': sd, 'steps': 0}, p)            # the release wraps the weights under "model"
    m = vq16(p)
    got = m.state_dict()
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    assert torch.equal(m.quantize.codebook_used, sd['quantize.codebook_used'])

def test_vq16_rejects_other_layouts(official):
    lay, sd = official
    bad = dict(sd); bad.pop('quantize.codebook_used'); bad['encoder.foo.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match='codebook_used') as e: vq16(bad)
    assert 'encoder.foo.weight' in str(e.value)
    small = random_state_dict(layout(vq_fmnist_s()))
    with pytest.raises(ValueError, match='wrong shape|missing'): vq16(small)

def test_vq16_round_trip_small_input(official):
    _, sd = official
    m = VQModel(vq_config('vq16', image_size=32)); m.load_state_dict(sd, strict=True); m.eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ids = m.encode(x)
    assert ids.shape == (1, 4) and ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < 16384
    y = m.decode(ids)
    assert y.shape == x.shape and y.abs().max() <= 1

@pytest.mark.parametrize('name', ['vq_fmnist_s', 'vq_fmnist_l'])
def test_shipped_fmnist_tokenizers(name):
    if not (WEIGHTS_DIR/f'{name}.pt').exists(): pytest.skip(f'{name}.pt not trained yet')
    m = load_pretrained(VQModel, name)
    assert m.grid == (7, 7) and m.vocab_size == vq_config(name).codebook_size
    assert m.meta['metrics']['psnr'] > 18          # trained weights reconstruct (random init gives ~5 dB)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b = encode_dataset(m, x, bs=3), m.encode(x)
    assert torch.equal(a, b) and a.shape == (8, 49)
    try:
        from arclf.data import load_fashion_mnist
        test = load_fashion_mnist('test', download=False)
    except Exception as e: pytest.skip(f'Fashion-MNIST not available ({e}); set ARCLF_DATA')
    x = test.images(torch.arange(64))
    ids = m.encode(x)
    rec = m.decode(ids)
    assert 10 * torch.log10(4 / ((rec - x) ** 2).mean()) > 18                # real reconstructions (random init: ~5 dB)
    assert (m.encode(rec) == ids).float().mean() > 0.4                       # decoded images re-encode largely to the same ids

def test_save_load_pretrained_round_trip(tmp_path):
    m = vq_fmnist_s(ch=8, z_channels=8)
    save_pretrained(m, tmp_path/'t.pt', recipe={'x': 1})
    m2 = load_pretrained(VQModel, tmp_path/'t.pt')
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    assert torch.equal(m.eval().encode(x), m2.encode(x)) and m2.meta == {'recipe': {'x': 1}}

def test_latent_noise_flips_more_with_t():
    m = vq_fmnist_s(ch=8, z_channels=8).eval()
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows = latent_noise_table(m, x, ts=(0, .2, 1.))
    assert rows[0]['flipped'] == 0 and rows[1]['flipped'] < rows[2]['flipped']
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(m.encode(x, .4, g1), m.encode(x, .4, g2))

@pytest.mark.parametrize('bad,msg', [
    (lambda: torch.rand(1, 3, 28, 28), 'channel'), (lambda: torch.rand(1, 1, 27, 27), '28x28'),
    (lambda: torch.rand(1, 1, 28, 28) * 255, 'un-normalized'), (lambda: torch.full((1, 1, 28, 28), float('nan')), 'NaN'),
    (lambda: torch.rand(1, 28, 28), 'batch')])
def test_bad_images(bad, msg):
    with pytest.raises((ValueError, TypeError), match=msg): vq_fmnist_s(ch=8, z_channels=8).encode(bad())

def test_bad_ids():
    m = vq_fmnist_s(ch=8, z_channels=8)
    with pytest.raises(ValueError, match=r'\[0, 256\)'): m.decode(torch.full((1, 49), -1))
    with pytest.raises(ValueError, match=r'\[0, 256\)'): m.decode(torch.full((1, 49), 300))
    with pytest.raises(TypeError, match='integer'): m.decode(torch.zeros(1, 49))
    with pytest.raises(ValueError, match='shape'): m.decode(torch.zeros(49, dtype=torch.long))

def test_frechet_distance_gaussians():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(f, f)) < 1e-8
    d = frechet_distance(f, f * 2 + torch.tensor([3., 0.], dtype=torch.float64))
    assert abs(d - (9 + 2 * 1)) < 0.3           # |Δμ|² + Σ(σ1 - σ2)² = 9 + 1 + 1
