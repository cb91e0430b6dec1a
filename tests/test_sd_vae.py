"""The native SD-VAE encoder (`arclf.diffusion.SDVAEEncoder`): the official layout, strict loading
of the released `AutoencoderKL` file, equality with diffusers' `AutoencoderKL` (when installed)."""

import json
from pathlib import Path
import pytest
import torch
from safetensors.torch import save_file
from arclf.core import create_model, layout, model_spec, random_state_dict
from arclf.diffusion import SDVAEEncoder, load_sd_vae, sd_vae_encoder, sd_vae_layout

# shared/checkpoint-layouts/sd_vae_ft_ema_keys.json: `stabilityai/sd-vae-ft-ema` as diffusers'
# `AutoencoderKL.from_pretrained` holds it (248 keys: encoder, quant_conv, decoder, post_quant_conv)
LAYOUT = Path(__file__).parent / 'layouts' / 'sd_vae_ft_ema_keys.json'
ENCODER = ('encoder.', 'quant_conv.')
# the released file's older names of the mid-block attention linears (diffusers renames them)
OLD = {'to_q': 'query', 'to_k': 'key', 'to_v': 'value', 'to_out.0': 'proj_attn'}


@pytest.fixture(scope='module')
def official() -> dict:
    return json.loads(LAYOUT.read_text())


@pytest.fixture(scope='module')
def full_sd(official) -> dict:
    "Random weights in the layout of the whole released file."
    return random_state_dict(official, torch.Generator().manual_seed(0))


def _old_names(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for new, old in OLD.items():
            if '.mid_block.attentions.' in k and f'.{new}.' in k:
                k = k.replace(f'.{new}.', f'.{old}.')
        out[k] = v
    return out


def _encoder_part(d: dict) -> dict:
    return {k: v for k, v in d.items() if k.startswith(ENCODER)}


def test_layout_is_the_encoder_half_of_the_official_file(official):
    with torch.device('meta'):
        m = SDVAEEncoder()
    assert layout(m) == _encoder_part(official)
    assert len(layout(m)) == 108
    assert sd_vae_layout() == official  # the full layout the loader checks a file against
    assert type(create_model('sd_vae_ft_ema')) is SDVAEEncoder
    spec = model_spec('sd_vae_ft_ema')
    assert (spec.family, spec.weights) == ('vae', 'diffusion_pytorch_model.safetensors')


def test_shapes_and_bad_input():
    m = SDVAEEncoder(block_out_channels=(32, 32), layers_per_block=1)  # small: factor 2
    x = torch.rand(2, 3, 16, 12) * 2 - 1
    mean, std = m.moments(x)
    assert mean.shape == std.shape == m(x).shape == (2, 4, 8, 6)
    assert torch.equal(m(x), mean) and bool((std > 0).all())
    with pytest.raises(ValueError, match='multiple of 2'):
        m(torch.zeros(1, 3, 15, 16))
    with pytest.raises(ValueError, match='3 channel'):
        m(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match='should lie in'):
        m(torch.full((1, 3, 16, 16), 255.0))
    with pytest.raises(ValueError, match='not divisible by norm_num_groups'):
        SDVAEEncoder(block_out_channels=(48, 64))


def test_the_released_file_loads_strictly(full_sd, tmp_path):
    f = tmp_path / 'diffusion_pytorch_model.safetensors'
    save_file(full_sd, str(f))
    m = load_sd_vae(f)
    want = _encoder_part(full_sd)
    assert all(torch.equal(v, want[k]) for k, v in m.state_dict().items())
    assert not m.training and m.name.startswith('sd_vae_encoder(') and isinstance(m.name, str)
    assert m.name != SDVAEEncoder().name  # the weights, not the path, name it
    # a diffusers pipeline folder (vae/ holds the file), with the older attention names
    (tmp_path / 'pipe' / 'vae').mkdir(parents=True)
    save_file(_old_names(full_sd), str(tmp_path / 'pipe' / 'vae' / f.name))
    old = sd_vae_encoder(tmp_path / 'pipe')
    assert old.name == m.name
    assert torch.equal(
        old.encoder.mid_block.attentions[0].to_out[0].weight,
        full_sd['encoder.mid_block.attentions.0.to_out.0.weight'],
    )
    # an encoder-only state dict in this module's layout (e.g. its own state_dict()) loads too
    assert load_sd_vae(m.state_dict()).name == m.name
    # by name, as the DiT/SiT classifiers get it: the registry hands the file to load_sd_vae
    from arclf.core import create_model

    assert create_model('sd_vae_ft_ema', pretrained=f).name == m.name


def test_a_wrong_file_is_refused_by_name(full_sd, tmp_path):
    missing = {k: v for k, v in full_sd.items() if k != 'decoder.conv_out.bias'}
    save_file(missing, str(tmp_path / 'missing.safetensors'))
    with pytest.raises(ValueError, match=r'1 missing key\(s\): decoder.conv_out.bias'):
        load_sd_vae(tmp_path / 'missing.safetensors')
    extra = {**full_sd, 'decoder.extra.weight': torch.zeros(3)}
    save_file(extra, str(tmp_path / 'extra.safetensors'))
    with pytest.raises(ValueError, match=r'1 unexpected key\(s\): decoder.extra.weight'):
        load_sd_vae(tmp_path / 'extra.safetensors')
    shape = {**full_sd, 'quant_conv.weight': torch.zeros(8, 8, 3, 3)}
    with pytest.raises(ValueError, match='quant_conv.weight: expected'):
        load_sd_vae(shape)
    both = {**full_sd, 'encoder.mid_block.attentions.0.query.weight': torch.zeros(512, 512)}
    with pytest.raises(ValueError, match='both the old and the new'):
        load_sd_vae(both)
    with pytest.raises(FileNotFoundError, match='is not a local file or folder'):
        load_sd_vae(tmp_path / 'nope.safetensors')
    with pytest.raises(FileNotFoundError, match='holds no diffusion_pytorch_model'):
        load_sd_vae(tmp_path)
    # the SDXL VAE has this layout but another scaling factor: its config.json tells
    (tmp_path / 'xl').mkdir()
    (tmp_path / 'xl' / 'config.json').write_text(json.dumps({'scaling_factor': 0.13025}))
    (tmp_path / 'xl' / 'diffusion_pytorch_model.safetensors').write_bytes(b'')  # never read
    with pytest.raises(ValueError, match='scaling_factor=0.13025'):
        load_sd_vae(tmp_path / 'xl')


def test_the_hub_name_means_the_registered_file(tmp_path, monkeypatch):
    "diffusers' hub name, like None, looks for the registered file (offline here: not downloaded)."
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setenv('ARCLF_WEIGHTS', str(tmp_path / 'weights'))
    monkeypatch.setenv('ARCLF_OFFLINE', '1')
    for src in (None, 'stabilityai/sd-vae-ft-ema'):
        with pytest.raises(FileNotFoundError, match='diffusion_pytorch_model.safetensors'):
            load_sd_vae(src)


def test_equal_to_diffusers(official):
    "Same random weights in diffusers' AutoencoderKL (sd-vae-ft-ema's config) and the native one."
    pytest.importorskip('diffusers')
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    ref = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=('DownEncoderBlock2D',) * 4,
        up_block_types=('UpDecoderBlock2D',) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        act_fn='silu',
        latent_channels=4,
        norm_num_groups=32,
        sample_size=256,
    ).eval()
    assert layout(ref) == official
    with torch.no_grad():  # affine norms away from (1, 0), and one clamped log-variance each way
        for name, p in ref.named_parameters():
            if 'norm' in name:
                p.add_(0.1 * torch.randn_like(p))
        ref.quant_conv.bias[6] += 40.0
        ref.quant_conv.bias[7] -= 60.0
    m = load_sd_vae(ref.state_dict())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        d = ref.encode(x).latent_dist
        mean, std = m.moments(x)
    s = 0.18215
    assert d.logvar[:, 2].min() == 20.0 and d.logvar[:, 3].max() == -30.0  # the clamp is used
    dm, ds = (mean - d.mean * s).abs().max().item(), ((std - d.std * s) / (d.std * s)).abs().max()
    print(f'max |mean diff| {dm:.2e} (|mean| <= {mean.abs().max():.2f}), max rel std diff {ds:.2e}')
    torch.testing.assert_close(mean, d.mean * s, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std, d.std * s, rtol=1e-5, atol=0)
