"""Bad input through the Python API: each raises one clear error that names the input and the fix,
before any expensive work. (The command line's table is in notebook 08, `Bad input`.)"""

import pytest
import torch
import arclf
from arclf.data import load_dataset
from arclf.training import train_model


@pytest.fixture(scope='module')
def clf():
    return arclf.create_classifier('randar_fmnist')


@pytest.fixture(scope='module')
def test_set():
    return load_dataset('fashion_mnist', 'test', n_per_class=2)


def fails(f, *fragments, exc=(ValueError, TypeError, KeyError, FileNotFoundError)):
    "`f()` raises one of `exc` whose one-line message holds every fragment."
    with pytest.raises(exc) as e:
        f()
    msg = str(e.value)
    assert all(s in msg for s in fragments), msg
    return msg


def test_images_in_0_1_get_a_hint(clf, test_set):
    x = test_set.images()
    fails(lambda: clf.predict((x + 1) / 2, n=1), 'looks like images in [0, 1]', 'x * 2 - 1')
    # stored uint8 images are converted, the one conversion: the same predictions
    assert (clf.predict(test_set.x[:4], n=1) == clf.predict(x[:4], n=1)).all()
    fails(lambda: clf.predict(x * 127.5 + 127.5, n=1), 'un-normalized')
    fails(lambda: clf.predict(x[0], n=1), 'x[None]')
    assert clf.predict(x[:2], n=1).shape == (2,)  # the same images in [-1, 1] are fine


def test_counts_and_labels(clf, test_set):
    fails(lambda: arclf.evaluate(clf, test_set, 0), 'n (samples per image', '>= 1')
    bad = test_set.subset(1)
    bad.y[0] = 10  # = the class count: the unconditional (null) class, never a candidate
    fails(lambda: arclf.evaluate(clf, bad, 1), 'labels span', 'id 10 is the unconditional null')
    bad.y[0] = -1
    fails(lambda: arclf.evaluate(clf, bad, 1), 'labels span [-1, 9]')
    fails(lambda: arclf.evaluate(clf, test_set, 1, bs=0), 'bs')
    fails(lambda: load_dataset('fashion_mnist', 'test', n_per_class=0), 'n_per_class')
    fails(lambda: load_dataset('fashion_mnist', 'test', n_per_class=-1), 'n_per_class')


def test_unknown_names():
    fails(lambda: arclf.create_model('randar_fmist'), 'randar_fmnist')
    fails(lambda: load_dataset('fashionmnist'), 'unknown dataset', 'fashion_mnist')
    fails(lambda: arclf.create_classifier('dit', device='foo'), 'foo')


def test_corrupt_and_foreign_weights(tmp_path):
    good = arclf.core.weights_path('dit_fmnist')
    (tmp_path / 'cut.pt').write_bytes(good.read_bytes()[:1000])
    (tmp_path / 'empty.pt').write_bytes(b'')
    for f in ('cut.pt', 'empty.pt'):
        fails(lambda: arclf.create_model('dit_fmnist', pretrained=tmp_path / f), f)
    fails(lambda: arclf.create_model('dit_fmnist', pretrained=tmp_path / 'none.pt'), 'none.pt')
    m = arclf.create_model('dit_fmnist')
    sd = {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in m.state_dict().items()}
    fails(lambda: arclf.core.load_strict(arclf.create_model('dit_fmnist'), sd), 'int32',
          'floating point')


def test_training_counts_checked_first(tmp_path):
    kw = dict(n_train=8, bs=8, depth=1, hidden_size=32, device='cpu', log_every=0)
    fails(lambda: train_model('dit', epochs=0, **kw), 'epochs must be an integer >= 1')
    fails(lambda: train_model('dit', **{**kw, 'n_train': 0}), 'n_train must be an integer >= 1')
    fails(lambda: train_model('dit', **{**kw, 'bs': 16}), 'batch size 16 is larger than the 8')
    fails(lambda: train_model('dit', **{**kw, 'device': 'cuda:9'}), 'not available')
    (tmp_path / 'ro.pt').write_text('keep me')
    fails(lambda: train_model('dit', out=tmp_path / 'ro.pt', **kw), 'exists')
    assert (tmp_path / 'ro.pt').read_text() == 'keep me'


def test_every_help_prints_help_and_does_nothing():
    "`--help` on every command and family prints its help, exits 0, and runs or writes nothing."
    from test_cli import arclf_cmd, ROOT
    from arclf.cli import parser

    def state():  # what a command run from the repository could write
        return sorted((str(f), f.stat().st_mtime_ns) for d in ('results', 'runs', 'arclf/weights')
                      for f in (ROOT / d).rglob('*') if f.is_file())

    before = state()
    sub = next(a for a in parser()._actions if a.dest == 'cmd')
    cmds = [[c] for c in sub.choices] + [['train', f] for f in ('tokenizer', 'randar', 'dit', 'sit')]
    cmds += [['bench', 'training'], ['train', '--config', 'randar_fmnist']]
    assert len(cmds) > 15
    for c in cmds:
        p = arclf_cmd(*c, '--help')
        assert p.returncode == 0 and 'usage: arclf' in p.stdout, (c, p.stdout[-300:], p.stderr)
    assert state() == before  # nothing written (results/, runs/, the shipped weights)
