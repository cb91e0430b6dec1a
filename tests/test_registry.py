"""Checkpoints by name: the official registrations (URL, file, official layout), the checked
download of `find_weights` (atomic, sha256 and size verified, ARCLF_OFFLINE, one-line errors), name
resolution through $ARCLF_WEIGHTS, and `weights_table` kept in step with the docs."""

import json, re, urllib.error, urllib.request
from pathlib import Path
import pytest
import torch
from torch import nn
import arclf
import arclf.diffusion  # noqa: F401 -- every family registers its models on import
import arclf.llamagen  # noqa: F401
import arclf.maskgit  # noqa: F401
import arclf.randar  # noqa: F401
import arclf.tokenizer  # noqa: F401
import arclf.var  # noqa: F401
from arclf import core
from arclf.core import (
    DownloadError,
    create_model,
    download_dir,
    download_file,
    file_digest,
    find_weights,
    layout,
    layout_diff,
    load_strict,
    model_spec,
    random_state_dict,
    register_model,
    weights_table,
)

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings('ignore:.*meta parameter')
ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = Path(__file__).parent / 'layouts'  # copies of ../shared/checkpoint-layouts
# every official registration and the recorded key list of its published file; the random-crop
# checkpoints are strict loads into the same builders (the official scripts' strict=True)
OFFICIAL = {
    'vq16': 'vq16_keys.json',
    'randar_l': 'randar_l_keys.json',
    'randar_l_rc': 'randar_l_keys.json',
    'randar_xl': 'randar_xl_keys.json',
    'DiT_XL_2': 'dit_xl2_keys.json',
    'dit_xl2_rc': 'dit_xl2_keys.json',
    'SiT_XL_2': 'sit_xl2_keys.json',
    'llamagen_gpt_l': 'llamagen_gpt_l_c2i_keys.json',
    'maskgit_vq': 'maskgit_vq_keys.json',
    'var_vae': 'vae_var_ch160v4096z32_keys.json',
    'var_d16': 'var_d16_keys.json',
    'var_d30': 'var_d30_keys.json',
}
# registrations whose layout another test file checks (the SD-VAE file holds the whole VAE, arclf
# builds its encoder)
CHECKED_ELSEWHERE = {'sd_vae_ft_ema': 'test_sd_vae.py',
                     # no recorded key lists: the layouts of d16 and d30, scaled to their depth
                     'var_d20': 'test_var.py', 'var_d24': 'test_var.py'}


def official_layout(name: str) -> dict:
    return json.loads((LAYOUTS / OFFICIAL[name]).read_text())


class Tiny(nn.Module):
    def __init__(self, n: int = 3):
        super().__init__()
        self.cfg = None
        self.lin = nn.Linear(n, 2)


def tiny(**kw):
    "A two-tensor model for the download tests."
    return Tiny(**kw)


@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    "An empty home and two $ARCLF_WEIGHTS folders; the network open unless a test closes it."
    home, w1, w2 = tmp_path / 'home', tmp_path / 'w1', tmp_path / 'w2'
    monkeypatch.setenv('HOME', str(home))  # no ~/.cache/arclf/weights of the user
    monkeypatch.setenv('ARCLF_WEIGHTS', f'{w1}:{w2}')
    monkeypatch.delenv('ARCLF_OFFLINE', raising=False)
    return tmp_path, w1, w2


@pytest.fixture
def published(tmp_path):
    "A 'published' checkpoint served by a file:// URL, and its sha256."
    p = tmp_path / 'server' / 'tiny-release.pt'
    p.parent.mkdir()
    torch.save(Tiny().state_dict(), p)
    return p, file_digest(p)


@pytest.fixture
def registered():
    "Register test models in the library's registry; removed afterwards."
    names = []

    def reg(name, **kw):
        register_model('test', name, f'{name}.pt', **kw)(tiny)
        names.append(name)
        return model_spec(name)

    yield reg
    for n in names:
        core._MODELS.pop(n, None)


def refuse_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError('the network was used')

    monkeypatch.setattr(urllib.request, 'urlopen', refuse)


def no_temporaries(*dirs):
    return [p.name for d in dirs if d.exists() for p in d.iterdir() if p.name.endswith('.tmp')]


# -- the official registrations ---------------------------------------------------------------


def test_every_official_registration_has_its_layout_checked():
    official = {n for n, s in core._MODELS.items() if s.url}
    assert official == set(OFFICIAL) | set(CHECKED_ELSEWHERE)
    for f in CHECKED_ELSEWHERE.values():
        assert (Path(__file__).parent / f).exists(), f


@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_official_layout(name):
    "The registered builder makes exactly the published layout: same keys, order and shapes."
    lay = official_layout(name)
    with torch.device('meta'):
        m = create_model(name)
    assert layout_diff(lay, layout(m)) == ''
    assert list(layout(m)) == list(lay)
    # and load_strict accepts a file of that layout (meta tensors: no gigabytes written)
    sd = {k: torch.empty(s, device='meta', dtype=torch.bfloat16) for k, s in lay.items()}
    load_strict(m, sd, what=name)
    del sd[next(iter(sd))]
    with pytest.raises(ValueError, match=re.escape(f'1 missing key(s): {next(iter(lay))}')):
        load_strict(m, sd, what=name)


def test_randar_xl_is_the_published_file():
    "RandAR-XL: the 0.7B llamagen file of the README's table (ziqipang/RandAR @ d374a72)."
    s = model_spec('randar_xl')
    f = 'randar_0.7b_llamagen_360k_bs_1024_lr_0.0004.safetensors'
    assert s.weights == f and s.url == f'https://huggingface.co/ziqipang/RandAR/resolve/main/{f}'
    lay = official_layout('randar_xl')
    assert sum(torch.Size(v).numel() for v in lay.values()) == 774_700_800


def test_official_sources():
    hf = 'https://huggingface.co/'
    assert model_spec('vq16').url == f'{hf}FoundationVision/LlamaGen/resolve/main/vq_ds16_c2i.pt'
    assert model_spec('vq16').key == 'model'
    assert model_spec('randar_l').url == (
        f'{hf}ziqipang/RandAR/resolve/main/randar_0.3b_llamagen_360k_bs_1024_lr_0.0004.safetensors')
    assert model_spec('DiT_XL_2').url == (
        'https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt')
    assert model_spec('SiT_XL_2').url.startswith('https://www.dl.dropboxusercontent.com/')
    for n in ('randar_l_rc', 'dit_xl2_rc'):
        s = model_spec(n)
        assert s.url.startswith(f'{hf}iasudakov/ar_classifier/resolve/main/')
        assert 'not verified' in s.note and 'not verified' in s.doc
        assert s.weights == f'{n}.pt'  # a local name of its own: never the stock file's
    for n, s in core._MODELS.items():
        if s.url:
            assert s.sha256 is None or re.fullmatch('[0-9a-f]{64}', s.sha256), n
    # every file name is distinct: one file can never stand for another model
    files = [s.weights for s in core._MODELS.values() if s.weights]
    assert len(files) == len(set(files))


def test_weights_table_is_in_the_docs():
    "The table in nbs/00_core.ipynb is `weights_table()` of the current registry."
    nb = json.loads((ROOT / 'nbs' / '00_core.ipynb').read_text())
    cells = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown']
    docs = [c for c in cells if '| name | family | file |' in c]
    assert len(docs) == 1
    rows = [l for l in docs[0].splitlines() if l.startswith('|')]
    assert rows == weights_table().splitlines(), (
        'the weights table of nbs/00_core.ipynb is stale: paste arclf.core.weights_table() '
        '(with arclf.tokenizer, arclf.maskgit, arclf.randar, arclf.llamagen and arclf.diffusion '
        'imported) into its cell')
    table = weights_table()
    for n in OFFICIAL:
        assert f'| `{n}` |' in table
    assert 'not recorded' in table and 'file name on the model card not verified' in table


# -- downloads --------------------------------------------------------------------------------


def test_download_file_checks_and_is_atomic(tmp_path, published, monkeypatch):
    monkeypatch.delenv('ARCLF_OFFLINE', raising=False)
    src, sha = published
    url, dl = src.as_uri(), tmp_path / 'dl'
    got = download_file(url, dl / 'a.pt', ('sha256', sha), size=src.stat().st_size,
                        progress=False)
    assert got.read_bytes() == src.read_bytes()
    with pytest.raises(DownloadError) as e:
        download_file(url, dl / 'b.pt', ('sha256', 'f' * 64), progress=False)
    msg = str(e.value)
    assert '\n' not in msg and url in msg
    assert f'sha256 mismatch: expected {"f" * 64}, got {sha}' in msg
    with pytest.raises(DownloadError, match='size mismatch: expected 1 bytes'):
        download_file(url, dl / 'c.pt', size=1, progress=False)
    assert sorted(p.name for p in dl.iterdir()) == ['a.pt']  # no temporary, no bad file


def test_data_keeps_its_download_names(tmp_path, monkeypatch):
    from arclf.data import DatasetNotFound, download_file as data_download, file_digest as fd

    assert fd is file_digest
    monkeypatch.setenv('ARCLF_OFFLINE', '1')
    with pytest.raises(DatasetNotFound, match='ARCLF_OFFLINE is set'):
        data_download(['file:///nowhere'], tmp_path / 'x')


def test_find_weights_downloads_once_into_the_first_folder(weights_env, published, registered,
                                                           capsys):
    tmp, w1, w2 = weights_env
    src, sha = published
    registered('tiny_ok', url=src.as_uri(), sha256=sha, size=src.stat().st_size)
    assert download_dir() == w1
    m = create_model('tiny_ok', pretrained=True)
    assert torch.equal(m.lin.weight.data, torch.load(src)['lin.weight']) and not m.training
    assert (w1 / 'tiny_ok.pt').read_bytes() == src.read_bytes()
    assert 'sha256' not in capsys.readouterr().err  # recorded: nothing to print
    src.unlink()  # the server is gone: the local copy is used
    assert find_weights('tiny_ok') == w1 / 'tiny_ok.pt'
    assert no_temporaries(w1, w2) == []


def test_unrecorded_checksum_is_printed(weights_env, published, registered, capsys):
    src, sha = published
    registered('tiny_new', url=src.as_uri())
    p = find_weights('tiny_new', progress=False)
    err = capsys.readouterr().err
    assert p.exists() and f"record sha256='{sha}'" in err and "'tiny_new'" in err


def test_checksum_mismatch_is_refused_and_not_kept(weights_env, published, registered):
    tmp, w1, w2 = weights_env
    src, sha = published
    registered('tiny_bad', url=src.as_uri(), sha256='0' * 64)
    with pytest.raises(DownloadError) as e:
        create_model('tiny_bad', pretrained=True)
    msg = str(e.value)
    assert '\n' not in msg
    for part in (src.as_uri(), f'expected {"0" * 64}', f'got {sha}', str(w1), 'tiny_bad.pt',
                 'pretrained=PATH'):
        assert part in msg, part
    assert not (w1 / 'tiny_bad.pt').exists() and no_temporaries(w1) == []


def test_offline_error_is_one_line(weights_env, registered, monkeypatch):
    tmp, w1, w2 = weights_env
    refuse_network(monkeypatch)
    monkeypatch.setenv('ARCLF_OFFLINE', '1')
    url = 'https://example.org/models/tiny-release.pt'
    registered('tiny_off', url=url)
    with pytest.raises(FileNotFoundError) as e:
        create_model('tiny_off', pretrained=True)
    assert str(e.value) == (
        f"tiny_off.pt (weights of model 'tiny_off') is not on disk and ARCLF_OFFLINE is set: "
        f'download {url} and put it in {w1} as tiny_off.pt (or in a folder named by '
        '$ARCLF_WEIGHTS), or pass pretrained=PATH')
    with pytest.raises(DownloadError, match='download=False'):
        find_weights('tiny_off', download=False)


def test_network_failure_is_one_line(weights_env, registered, monkeypatch):
    tmp, w1, w2 = weights_env

    def fail(*a, **k):
        raise urllib.error.URLError('[Errno -2] Name or service not known')

    monkeypatch.setattr(urllib.request, 'urlopen', fail)
    url = 'https://example.org/tiny-release.pt'
    registered('tiny_net', url=url)
    with pytest.raises(DownloadError) as e:
        find_weights('tiny_net')
    msg = str(e.value)
    assert '\n' not in msg
    assert msg.startswith(f'could not download tiny_net.pt from {url} (URLError')
    assert f'put it in {w1} as tiny_net.pt' in msg and 'pretrained=PATH' in msg
    assert not w1.exists() or no_temporaries(w1) == []


def test_download_dir_without_arclf_weights(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('ARCLF_WEIGHTS', raising=False)
    assert download_dir() == tmp_path / '.cache' / 'arclf' / 'weights'


def test_name_resolution_through_arclf_weights(weights_env, published, registered, monkeypatch):
    tmp, w1, w2 = weights_env
    refuse_network(monkeypatch)
    src, _ = published
    registered('tiny_local', url='https://example.org/never.pt')
    w2.mkdir()
    (w2 / 'tiny_local.pt').write_bytes(src.read_bytes())
    assert find_weights('tiny_local') == w2 / 'tiny_local.pt'  # the second folder, no download
    w1.mkdir()
    torch.save(Tiny().state_dict(), w1 / 'tiny_local.pt')
    assert find_weights(model_spec('tiny_local')) == w1 / 'tiny_local.pt'  # the first one wins
    home = tmp / 'home' / '.cache' / 'arclf' / 'weights'
    home.mkdir(parents=True)
    registered('tiny_home')
    (home / 'tiny_home.pt').write_bytes(src.read_bytes())
    assert find_weights('tiny_home') == home / 'tiny_home.pt'
    registered('tiny_nowhere')  # no URL: the old message, naming where to put it
    with pytest.raises(FileNotFoundError, match=re.escape(f'put it in {w1} as tiny_nowhere.pt')):
        find_weights('tiny_nowhere')


def test_vq16_by_name_from_arclf_weights(weights_env, monkeypatch):
    """`create_model('vq16', pretrained=True)` finds the release in $ARCLF_WEIGHTS and loads the
    weights under its registered key "model", even beside another wrapper ('ema')."""
    tmp, w1, w2 = weights_env
    refuse_network(monkeypatch)
    lay = official_layout('vq16')
    sd = random_state_dict(lay, torch.Generator().manual_seed(0), dtype=torch.bfloat16)
    w2.mkdir()
    torch.save({'model': sd, 'ema': {'x': torch.zeros(1)}, 'steps': 0}, w2 / 'vq_ds16_c2i.pt')
    m = create_model('vq16', pretrained=True)
    got = m.state_dict()
    assert list(got) == list(lay) and not m.training
    for k in ('encoder.conv_in.weight', 'quantize.embedding.weight', 'decoder.conv_out.bias'):
        assert torch.equal(got[k], sd[k].float()), k


def test_register_model_checks_its_record(registered):
    with pytest.raises(ValueError, match='sha256 must be 64 lowercase hex digits'):
        registered('tiny_x', url='https://example.org/x.pt', sha256='ABC')
    with pytest.raises(ValueError, match='size must be a positive number of bytes'):
        registered('tiny_x', url='https://example.org/x.pt', size=-1)
    with pytest.raises(ValueError, match='needs weights='):
        register_model('test', 'tiny_x', url='https://example.org/x.pt')(tiny)
    # the old positional form still registers
    register_model('test', 'tiny_old', 'tiny_old.pt', 'shipped')(tiny)
    try:
        s = model_spec('tiny_old')
        assert (s.weights, s.source, s.url, s.sha256, s.size, s.key) == (
            'tiny_old.pt', 'shipped', None, None, None, None)
    finally:
        core._MODELS.pop('tiny_old')
    assert arclf.list_models('tiny_*') == []
