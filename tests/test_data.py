"Data loading at full size, and the errors users see for missing, partial and corrupt data."
import gzip
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from arclf import data as D

SYSTEM_FMNIST = Path('/usr/share/datasets/fashion-mnist')  # Debian's dataset-fashion-mnist


def test_fashion_mnist_full(data_root):
    tr = D.load_fashion_mnist('train', root=data_root)
    te = D.load_fashion_mnist('test', root=data_root)
    assert (len(tr), len(te)) == (60000, 10000)
    assert tr.x.shape[1:] == (1, 28, 28) and tr.x.dtype == torch.uint8
    assert te.y.bincount().tolist() == [1000] * 10
    x = te.images(slice(0, 8))
    assert x.min() >= -1 and x.max() <= 1
    assert x.min() < -0.9 and x.max() > 0.9  # scaled to [-1, 1], not left in [0, 1]


def test_cifar10_full(data_root, tmp_path, monkeypatch):
    # decode from the tarball, not a cached npz
    monkeypatch.setenv('ARCLF_CACHE', str(tmp_path))
    tr, te = D.load_cifar10('train', root=data_root), D.load_cifar10('test', root=data_root)
    assert (len(tr), len(te)) == (50000, 10000)
    assert tr.x.shape[1:] == (3, 32, 32) and tr.y.bincount().tolist() == [5000] * 10
    assert list(tmp_path.glob('cifar10/*.npz')), 'decoded arrays should be cached'


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    monkeypatch.delenv('ARCLF_DATA', raising=False)
    monkeypatch.setenv('ARCLF_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setattr(D, 'FASHION_URLS', [])
    monkeypatch.setattr(D, 'CIFAR_URLS', [])
    return tmp_path


def test_missing_dataset_names_paths(empty_env):
    if SYSTEM_FMNIST.exists():
        pytest.skip(f'a system copy of Fashion-MNIST exists ({SYSTEM_FMNIST}): nothing is missing')
    with pytest.raises(D.DatasetNotFound) as e:
        D.load_fashion_mnist('test', root=empty_env / 'nowhere')
    msg = str(e.value)
    assert str(empty_env / 'nowhere') in msg and 'ARCLF_DATA' in msg
    with pytest.raises(D.DatasetNotFound, match='CIFAR-10 not found'):
        D.load_cifar10('test', root=empty_env / 'nowhere')


def test_partial_dataset(empty_env):
    "Images without labels is not a dataset: the loader must not pick up half of it."
    if SYSTEM_FMNIST.exists():
        pytest.skip(f'a system copy of Fashion-MNIST exists ({SYSTEM_FMNIST}): it would be found')
    d = empty_env / 'fm'
    d.mkdir()
    header = b'\x00\x00\x08\x03' + (1).to_bytes(4, 'big') * 3
    (d / 't10k-images-idx3-ubyte.gz').write_bytes(gzip.compress(header + b'\x00'))
    with pytest.raises(D.DatasetNotFound, match=r'Fashion-MNIST \(test\) not found'):
        D.load_fashion_mnist('test', root=d)


def test_corrupt_files_named(empty_env):
    d = empty_env / 'fm'
    d.mkdir()
    (d / 't10k-images-idx3-ubyte.gz').write_bytes(b'not gzip at all')
    labels = b'\x00\x00\x08\x01' + (1).to_bytes(4, 'big') + b'\x01'
    (d / 't10k-labels-idx1-ubyte.gz').write_bytes(gzip.compress(labels))
    with pytest.raises(ValueError, match='t10k-images'):
        D.load_fashion_mnist('test', root=d)


def test_cifar_folder_layouts(empty_env):
    d = empty_env / 'c10'
    for split in ('train', 'test'):
        for c in ('cat', 'dog'):
            (d / split / c).mkdir(parents=True)
            Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(d / split / c / '0.png')
    ds = D.load_cifar10('test', root=d)
    assert len(ds) == 2 and ds.y.tolist() == [3, 5]
    (d / 'test' / 'cat' / '1.png').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='1.png'):
        D.load_cifar10('test', root=d)
    e = empty_env / 'empty'
    (e / 'train').mkdir(parents=True)
    (e / 'test').mkdir()
    with pytest.raises(ValueError, match='no images'):
        D.load_cifar10('test', root=e)


def test_imagenet_folder_errors(tmp_path):
    val = tmp_path / 'val'
    for i in range(1000):
        (val / f'n{i:08d}').mkdir(parents=True)
    with pytest.raises(ValueError, match='no images'):
        D.imagenet_variant('val', val, val)
    bad = tmp_path / 'bad' / 'cats'
    bad.mkdir(parents=True)
    with pytest.raises(ValueError, match='not an ImageNet wnid'):
        D.imagenet_variant('r', tmp_path / 'bad', val)
    with pytest.raises(ValueError, match='1000 class folders'):
        D.imagenet_wnids(tmp_path / 'bad')
    with pytest.raises(ValueError, match='corruption='):
        D.imagenet_variant('c', tmp_path, val)


def test_shifts_are_deterministic_and_bounded(data_root):
    te = D.load_fashion_mnist('test', root=data_root).subset(3)
    for s in D.SHIFTS:
        a, b = D.shifted(te, s), D.shifted(te, s)
        assert torch.equal(a.x, b.x) and a.x.dtype == torch.uint8 and a.x.shape == te.x.shape
        assert not torch.equal(a.x, te.x)
    with pytest.raises(ValueError, match='severity'):
        D.shifted(te, 'jpeg', severity=6)
    # higher severity = more damage
    err = [
        (D.shifted(te, 'gaussian_noise', s).x.float() - te.x.float()).abs().mean()
        for s in (1, 5)
    ]
    assert err[1] > err[0]
