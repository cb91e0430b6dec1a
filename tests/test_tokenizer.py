"""Integration tests of arclf.tokenizer: official VQ-16 layout, strict loading, round trips, shipped
weights, bad input."""

import json, math, os
from pathlib import Path
import pytest, torch
from arclf.core import (
    layout,
    layout_diff,
    random_state_dict,
    load_pretrained,
    atomic_save,
    save_pretrained,
    create_model,
    model_meta,
)
from arclf.tokenizer import VQModel, VQConfig, vq16, vq_fmnist_s, encode_dataset
from arclf.tokenizer_study import latent_noise_table, frechet_distance
from arclf.data import load_fashion_mnist

# the recorded key list of vq_ds16_c2i.pt: in the repository's tests/layouts when it is committed
# there, else in the checkpoint-layouts folder beside the repository
LAYOUTS = (
    Path(__file__).parent / 'layouts' / 'vq16_keys.json',
    Path(__file__).resolve().parents[2] / 'shared' / 'checkpoint-layouts' / 'vq16_keys.json',
)
LAYOUT = next((p for p in LAYOUTS if p.exists()), LAYOUTS[-1])


@pytest.fixture(scope='module')
def official():
    "A state dict with exactly the official vq_ds16_c2i.pt layout, from its recorded key list."
    if not LAYOUT.exists():
        pytest.skip(f'the recorded layout of vq_ds16_c2i.pt is not here (looked for {LAYOUTS})')
    lay = json.loads(LAYOUT.read_text())
    return lay, random_state_dict(lay, torch.Generator().manual_seed(0))


def test_vq16_layout_is_official(official):
    lay, _ = official
    assert layout_diff(lay, layout(VQModel(VQConfig()))) == ''
    assert list(layout(VQModel(VQConfig()))) == list(lay)
    with torch.device('meta'):
        m, direct = create_model('vq16'), vq16()
    assert layout(m) == layout(direct) == lay and m.cfg == direct.cfg


def test_vq16_loads_official_file_strictly(official, tmp_path):
    lay, sd = official
    p = tmp_path / 'vq_ds16_c2i.pt'
    atomic_save({'model': sd, 'steps': 0}, p)  # the release wraps the weights under "model"
    m = create_model('vq16', pretrained=p)
    got = m.state_dict()
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    assert torch.equal(m.quantize.codebook_used, sd['quantize.codebook_used'])


def test_vq16_rejects_other_layouts(official, tmp_path):
    lay, sd = official
    bad = dict(sd)
    bad.pop('quantize.codebook_used')
    bad['encoder.foo.weight'] = torch.zeros(1)
    atomic_save(bad, tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='codebook_used') as e:
        create_model('vq16', pretrained=tmp_path / 'bad.pt')
    assert 'encoder.foo.weight' in str(e.value)
    atomic_save(random_state_dict(layout(vq_fmnist_s())), tmp_path / 'small.pt')
    with pytest.raises(ValueError, match='wrong shape|missing'):
        create_model('vq16', pretrained=tmp_path / 'small.pt')
    with pytest.raises(TypeError, match='takes 0 positional arguments'):
        vq16(tmp_path / 'bad.pt')  # builders take config overrides only, no checkpoint


def test_vq16_round_trip_small_input(official):
    _, sd = official
    cfg = create_model('vq16', image_size=32).cfg
    assert cfg.image_size == 32 and cfg.codebook_size == 16384
    m = VQModel(cfg)
    m.load_state_dict(sd, strict=True)
    m.eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ids = m.encode(x)
    assert ids.shape == (1, 4) and ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < 16384
    y = m.decode(ids)
    assert y.shape == x.shape and y.abs().max() <= 1


@pytest.mark.parametrize('name,codes', [('vq_fmnist_s', 256), ('vq_fmnist_l', 4096)])
def test_shipped_fmnist_tokenizers(name, codes, data_root):
    m = create_model(name, pretrained=True)
    assert m.grid == (7, 7) and m.vocab_size == codes == create_model(name).cfg.codebook_size
    assert not m.training and m.meta['family'] == 'tokenizer' and m.meta['preset'] == name
    assert (
        m.meta['record']['metrics']['psnr'] > 18
    )  # trained weights reconstruct (random init gives ~5 dB)
    assert model_meta(name)['record'] == m.meta['record']
    ref = load_pretrained(VQModel, name)
    assert all(
        torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values())
    )
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b = encode_dataset(m, x, bs=3), m.encode(x)
    assert torch.equal(a, b) and a.shape == (8, 49)
    test = load_fashion_mnist('test', root=data_root, download=False)
    x = test.images(torch.arange(64))
    ids = m.encode(x)
    rec = m.decode(ids)
    assert (
        10 * torch.log10(4 / ((rec - x) ** 2).mean()) > 18
    )  # real reconstructions (random init: ~5 dB)
    assert (
        m.encode(rec) == ids
    ).float().mean() > 0.4  # decoded images re-encode largely to the same ids


def test_save_load_pretrained_round_trip(tmp_path):
    m = vq_fmnist_s(ch=8, z_channels=8)
    save_pretrained(m, tmp_path / 't.pt', recipe={'x': 1})
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    for m2 in (
        load_pretrained(VQModel, tmp_path / 't.pt'),
        create_model('vq_fmnist_s', pretrained=tmp_path / 't.pt'),
    ):
        assert torch.equal(m.eval().encode(x), m2.encode(x)) and m2.meta == {'recipe': {'x': 1}}
        assert m2.cfg == m.cfg and m2.cfg.ch == 8
    with pytest.raises(ValueError, match='unknown record fields'):
        save_pretrained(m, tmp_path / 'u.pt', metrics={'psnr': 1.0})


def test_latent_noise_flips_more_with_t():
    m = vq_fmnist_s(ch=8, z_channels=8).eval()
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows = latent_noise_table(m, x, ts=(0, 0.2, 1.0))
    assert [r['t'] for r in rows] == [0, 0.2, 1.0] and {'flipped', 'mse', 'psnr'} <= set(rows[0])
    assert rows[0]['flipped'] == 0 and 0 < rows[1]['flipped'] < rows[2]['flipped'] <= 1
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(m.encode(x, 0.4, g1), m.encode(x, 0.4, g2))


@pytest.mark.parametrize(
    'bad,msg',
    [
        (lambda: torch.rand(1, 3, 28, 28), 'channel'),
        (lambda: torch.rand(1, 1, 27, 27), '28x28'),
        (lambda: torch.rand(1, 1, 28, 28) * 255, 'un-normalized'),
        (lambda: torch.full((1, 1, 28, 28), float('nan')), 'NaN'),
        (lambda: torch.rand(1, 28, 28), 'batch'),
    ],
)
def test_bad_images(bad, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        vq_fmnist_s(ch=8, z_channels=8).encode(bad())


def test_bad_ids():
    m = vq_fmnist_s(ch=8, z_channels=8)
    with pytest.raises(ValueError, match=r'\[0, 256\)'):
        m.decode(torch.full((1, 49), -1))
    with pytest.raises(ValueError, match=r'\[0, 256\)'):
        m.decode(torch.full((1, 49), 300))
    with pytest.raises(TypeError, match='integer'):
        m.decode(torch.zeros(1, 49))
    with pytest.raises(ValueError, match='shape'):
        m.decode(torch.zeros(49, dtype=torch.long))


def test_frechet_distance_gaussians():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(f, f)) < 1e-8
    d = frechet_distance(f, f * 2 + torch.tensor([3.0, 0.0], dtype=torch.float64))
    assert abs(d - (9 + 2 * 1)) < 0.3  # |Δμ|² + Σ(σ1 - σ2)² = 9 + 1 + 1


def test_psnr_and_code_stats():
    from arclf.training import psnr, code_stats

    assert abs(psnr(0.01) - 10 * math.log10(4 / 0.01)) < 1e-9 and psnr(0.04) < psnr(0.01)
    st = code_stats(torch.tensor([[0, 0, 1, 1]]), vocab_size=4)
    assert st['usage'] == 0.5 and abs(st['perplexity'] - 2) < 1e-9


def test_train_tokenizer_records_its_run(data_root, tmp_path):
    """`arclf.training.train_tokenizer` learns (the loss falls, held-out images reconstruct better
    than the best constant image), returns the model with the one record schema and saves it."""
    from arclf.training import train_tokenizer

    test = load_fashion_mnist('test', root=data_root)
    train, held = test.subset(4), test.subset(1)
    m = train_tokenizer(
        'vq_fmnist_s',
        data=(train, held),
        epochs=3,
        bs=16,
        n_eval=10,
        warmup=1,
        progress=False,
        out=tmp_path / 't.pt',
        ch=8,
        z_channels=8,
    )
    rec = m.meta['record']
    assert (m.meta['family'], m.meta['preset'], m.meta['recipe']['dataset']) == (
        'tokenizer',
        'vq_fmnist_s',
        'fashion_mnist',
    )
    assert rec['steps'] == 6 and len(rec['loss_curve']) == 6 and len(rec['history']) == 3
    assert {'mse', 'psnr', 'usage', 'perplexity'} <= set(rec['metrics'])
    # it learns: 6 steps on 40 images (seeded) take the epoch loss from 0.68 to 0.41
    losses = [h['train_loss'] for h in rec['history']]
    assert losses[-1] < 0.8 * losses[0], losses
    # and the 10 held-out images reconstruct better than by their mean pixel value (mse 0.40 vs
    # 0.48; an untrained model gives 0.72)
    x = held.images()
    assert rec['metrics']['mse'] < 0.9 * ((x - x.mean()) ** 2).mean().item(), rec['metrics']
    assert m.meta['recipe']['n_train'] == 40 and m.meta['recipe']['overrides'] == {
        'ch': 8,
        'z_channels': 8,
    }
    saved = model_meta(tmp_path / 't.pt')
    assert saved['record'] == rec and saved['config']['ch'] == 8
    back = create_model('vq_fmnist_s', pretrained=tmp_path / 't.pt', ch=8, z_channels=8)
    assert torch.equal(back.encode(x), m.encode(x))
