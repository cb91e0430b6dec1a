"""Your own image folder through the command line and the API, and the demo on a machine with no
data and no network."""

import json
import urllib.request
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
import arclf
from arclf.data import load_dataset
from test_cli import arclf_cmd

# three grey classes a small model can tell apart: a bright square top-left, bottom-right, or none
CLASSES = ('top left', 'bottom_right', 'Empty')


def make_folder(root: Path, n_train: int = 12, n_test: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (('train', n_train), ('test', n_test)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for j in range(n):
                a = rng.integers(0, 40, (40, 36))  # not 28x28: fitted by the folder rule
                if c == 'top left':
                    a[2:18, 2:16] = 230
                elif c == 'bottom_right':
                    a[22:38, 20:34] = 230
                ext = ('png', 'JPG', 'jpeg', 'bmp')[j % 4]  # extensions in any case
                Image.fromarray(a.astype(np.uint8)).save(root / split / c / f'{j}.{ext}')
    return root


@pytest.fixture
def offline(tmp_path, monkeypatch):
    "No dataset folder, an empty cache, and a network that refuses every connection."
    monkeypatch.delenv('ARCLF_DATA', raising=False)
    monkeypatch.setenv('ARCLF_CACHE', str(tmp_path / 'cache'))

    def refuse(*a, **k):
        raise OSError('network is off in this test')

    monkeypatch.setattr(urllib.request, 'urlopen', refuse)
    return tmp_path


def test_folder_dataset_rules(offline):
    f = make_folder(offline / 'mine')
    te = load_dataset(str(f), 'test')
    assert te.shape == (1, 28, 28) and len(te) == 12
    assert te.classes == sorted(CLASSES) and te.y.bincount().tolist() == [4, 4, 4]
    # the images are the pictures, fitted: the bright square of 'top left' is in the top left
    tl = te.images()[te.y == te.classes.index('top left')].mean(0)[0]
    assert tl[3:10, 3:10].mean() > 0.5 > tl[18:, 18:].mean()


def test_demo_runs_offline_on_the_shipped_subset(offline):
    out = offline / 'demo'
    p = arclf_cmd('demo', '--n-per-class', '2', '--ks', '1', '--dit-ns', '2', '--out', str(out))
    assert 'shipped with arclf' in p.stderr
    r = json.loads((out / 'results.json').read_text())
    assert r['images'] == 20 and len(r['rows']) == 3
    assert (out / 'accuracy_vs_time.png').stat().st_size > 0
    # more than the shipped subset holds: a clear error naming what to do, not a download
    p = arclf_cmd('eval', '--n-per-class', '200', '--n', '1', code=2)
    assert 'network is off' in p.stderr and 'ARCLF_DATA' in p.stderr


def test_own_folder_all_families_through_the_cli(offline):
    f, runs = make_folder(offline / 'mine'), offline / 'runs'
    common = ['--data', str(f), '--runs', str(runs), '--epochs', '2', '--bs', '12']
    tiny = ['--cfg', 'n_layer=1', '--cfg', 'dim=64', '--cfg', 'n_head=2', '--log-every', '0']
    arclf_cmd('train', 'tokenizer', *common)
    tok = runs / 'mine' / 'vq_fmnist_s.pt'
    assert tok.exists()
    p = arclf_cmd('train', 'randar', *common, *tiny)
    assert f'tokenizer: {tok}' in p.stdout  # the tokenizer trained on this data, found by itself
    arclf_cmd('train', 'randar', '--order', 'raster', *common, *tiny)
    for fam in ('dit', 'sit'):
        arclf_cmd('train', fam, *common, '--cfg', 'depth=1', '--cfg', 'hidden_size=32')
    names = sorted(p.name for p in (runs / 'mine').iterdir())
    assert names == ['dit_fmnist.pt', 'randar_fmnist.pt', 'randar_fmnist_raster.pt',
                     'sit_fmnist.pt', 'vq_fmnist_s.pt']
    meta = arclf.model_meta(runs / 'mine' / 'randar_fmnist.pt')
    assert meta['config']['num_classes'] == 3 and meta['tokenizer'] == str(tok.resolve())
    # a second run never replaces the first without being asked to
    p = arclf_cmd('train', 'dit', *common, code=2)
    assert 'exists: pass --overwrite' in p.stderr
    for m in ('randar_fmnist', 'sit_fmnist'):
        res = offline / f'{m}.json'
        arclf_cmd('eval', '--model', str(runs / 'mine' / f'{m}.pt'), '--data', str(f), '--n', '2',
                  '--n-per-class', '0', '--out', str(res))
        r = json.loads(res.read_text())
        assert (r['images'], r['dataset'], r['forwards_per_image']) == (12, str(f), 3 * 2)
    out = offline / 'demo'
    arclf_cmd('demo', '--data', str(f), '--runs', str(runs), '--ks', '1,2', '--dit-ns', '2',
              '--n-per-class', '0', '--out', str(out))
    rows = json.loads((out / 'results.json').read_text())['rows']
    assert [r['method'] for r in rows] == ['RandAR, K=1 orders', 'RandAR, K=2 orders',
                                           'raster AR, K=1', 'DiT, 2 timesteps']
    # another folder of the same name never uses these models, and shipped models never score it
    g = make_folder(offline / 'elsewhere' / 'mine')
    p = arclf_cmd('demo', '--data', str(g), '--runs', str(runs), code=2)
    assert 'was trained on' in p.stderr
    p = arclf_cmd('eval', '--data', str(f), '--clf', 'randar', code=2)
    assert 'has 10 classes but mine/test has 3' in p.stderr


def test_own_folder_discriminative_and_var_through_the_cli(offline):
    """The ERM baseline and VAR on your own folder, offline: `arclf train discriminative` (a ViT
    with the folder's 3 classes and grey 28 px input, by the folder rule) and `arclf train var`
    (its VAE first), then `arclf eval --model FILE` on the folder's test images: one forward per
    image for the network, one VAR forward per class for A-VARC's S = 1."""
    f, runs = make_folder(offline / 'mine'), offline / 'runs'
    common = ['--data', str(f), '--runs', str(runs), '--epochs', '1', '--bs', '12',
              '--log-every', '0']
    arclf_cmd('train', 'discriminative', *common, '--cfg', 'depth=1')
    arclf_cmd('train', 'var', *common, '--tokenizer-epochs', '1', '--cfg', 'depth=1',
              '--cfg', 'dim=32', '--cfg', 'n_head=2')
    d = runs / 'mine'
    assert sorted(p.name for p in d.iterdir()) == ['var_fmnist.pt', 'var_vae_fmnist.pt',
                                                    'vit_erm_fmnist.pt']
    meta = arclf.model_meta(d / 'vit_erm_fmnist.pt')
    assert (meta['family'], meta['config']['num_classes'], meta['config']['in_chans']) == (
        'discriminative', 3, 1)
    for m, fw in (('vit_erm_fmnist', 1), ('var_fmnist', 3)):
        res = offline / f'{m}.json'
        arclf_cmd('eval', '--model', str(d / f'{m}.pt'), '--data', str(f), '--n', '1',
                  '--n-per-class', '0', '--out', str(res))
        r = json.loads(res.read_text())
        assert (r['images'], r['dataset'], r['forwards_per_image']) == (12, str(f), fw)
        assert 0 <= r['ci']['lo'] <= r['acc']['lower_bound'] <= r['ci']['hi'] <= 1


def test_own_folder_through_python(offline):
    """The same through the API: `train_model` on a folder, then its classifier on the folder's
    test images gives what `arclf eval` gives (one scoring path)."""
    from arclf.training import train_model

    f = make_folder(offline / 'mine')
    m = train_model('dit', str(f), out=offline / 'dit.pt', epochs=2, bs=12, depth=1,
                    hidden_size=32, device='cpu', log_every=0)
    assert (m.cfg.num_classes, m.cfg.in_channels, m.meta['recipe']['dataset']) == (3, 1, str(f))
    te = load_dataset(str(f), 'test')
    clf = arclf.create_classifier(offline / 'dit.pt')
    r = arclf.evaluate(clf, te, 3, seed=0, progress=False)
    assert r['scores'].shape == (12, 3, 3)
    acc = arclf.accuracy(r['scores'], r['classes'], r['y'])
    res = offline / 'r.json'
    arclf_cmd('eval', '--model', str(offline / 'dit.pt'), '--data', str(f), '--n', '3',
              '--n-per-class', '0', '--out', str(res))
    assert json.loads(res.read_text())['acc']['lower_bound'] == pytest.approx(acc, abs=1e-6)
    pred = clf.predict(te.images(), n=3)
    assert pred.shape == (12,) and set(pred.tolist()) <= {0, 1, 2}


def test_wheel_carries_its_data_and_version(tmp_path):
    """A wheel holds what a non-editable install needs (configs, reproduction plans, the shipped
    weights and the Fashion-MNIST subset with its licence), under the version of settings.ini,
    which `arclf --version` prints too."""
    import configparser
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    cfg = configparser.ConfigParser()
    cfg.read(root / 'settings.ini')
    version = cfg['DEFAULT']['version']
    assert arclf.__version__ == version
    assert arclf_cmd('--version').stdout.strip() == f'arclf {version}'
    p = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                        '--no-build-isolation', '-w', str(tmp_path), str(root)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (whl,) = tmp_path.glob('arclf-*.whl')
    assert whl.name.startswith(f'arclf-{version}-')
    names = set(zipfile.ZipFile(whl).namelist())
    need = [f'arclf/configs/{c}' for c in ('randar_fmnist.json', 'reproduce/cpu.json')]
    need += [f'arclf/weights/{w}.pt' for w in ('randar_fmnist', 'dit_fmnist', 'vq_fmnist_s')]
    need += [f'arclf/assets/fashion_mnist_test_subset/{f}' for f in
             ('LICENSE', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')]
    assert not [n for n in need if n not in names], sorted(names)


def test_held_out_images_cover_every_class_of_a_sorted_folder(offline, monkeypatch):
    """An image folder is read class by class. The held-out images of a learning curve and a
    `n_train` subset are class-balanced draws, not the last or first images as stored (which
    were all one class): the curve's chance level is 1/3, and every class is trained on."""
    from arclf.training import train_model
    from arclf.discriminative import train_discriminative

    f = make_folder(offline / 'mine')
    c = offline / 'curve.json'
    train_model('dit', str(f), out=offline / 'dit.pt', epochs=1, bs=6, n_valid=6, n_train=12,
                depth=1, hidden_size=32, device='cpu', log_every=0, curve=c, curve_first=1,
                curve_n=1, curve_images=3, tol=None)
    d = json.loads(c.read_text())
    assert d['chance'] == pytest.approx(1 / 3)  # the first 3 held-out images: one of each class
    assert d['points'][0]['images'] == 3
    import arclf.discriminative as D

    seen, make = [], D.TensorLoader

    def loader(x, y, **kw):  # the labels the network is trained on
        seen.append(y.clone())
        return make(x, y, **kw)

    monkeypatch.setattr(D, 'TensorLoader', loader)
    ds = load_dataset(str(f), 'train')
    train_discriminative('vit_erm_fmnist', data=(ds.x, ds.y), n_train=6, epochs=1, bs=6,
                         num_classes=3, depth=1)
    assert seen[0].bincount().tolist() == [2, 2, 2]
