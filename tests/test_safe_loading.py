"""No code runs from files: every file arclf reads back (weights, model records, training state,
partial and finished evaluations, token and dataset caches, stored scores, CIFAR-10 python batches)
is read as tensors, arrays and plain data only. Each test puts a crafted pickle whose unpickling
would run a shell command on one loading path, calls the public API that reads it, and checks that
nothing ran and that the error (if any) is one line naming the file."""

import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

import arclf
from arclf.core import load_weights, model_meta, load_pretrained, model_spec
from arclf.randar import RandAR

torch.set_num_threads(2)


class Boom:
    "Unpickling this runs `touch marker`: what a crafted checkpoint could do."

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {shlex.quote(self.marker)}',))


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / 'PWNED'
    yield m
    assert not m.exists(), 'code ran while a file was read'


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    "arclf's cache and weight folders inside tmp_path (the data folder is left as it is)."
    monkeypatch.setenv('ARCLF_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('ARCLF_WEIGHTS', str(tmp_path / 'weights'))
    (tmp_path / 'weights').mkdir()
    return tmp_path


def refused(marker, fn, path, exc=ValueError):
    "`fn()` must raise `exc` with a one-line message naming `path`, and run nothing."
    with pytest.raises(exc) as e:
        fn()
    assert not marker.exists(), 'the payload ran'
    msg = str(e.value)
    assert str(path) in msg, f'the error does not name the file: {msg}'
    assert '\n' not in msg, f'not a one-line error: {msg}'
    assert not isinstance(e.value, pickle.UnpicklingError)


def record(marker) -> dict:
    "A `save_pretrained` record whose weights hold the payload."
    return dict(config=dict(n_layer=1), model={'w': Boom(marker)}, meta={})


def test_the_payload_runs_when_unpickled_unsafely(tmp_path, marker):
    "The payload is live: an unrestricted load runs it (so the tests below mean something)."
    p = tmp_path / 'evil.pt'
    torch.save(record(marker), p)
    torch.load(p, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with open(tmp_path / 'evil.pkl', 'wb') as f:
        pickle.dump({b'data': Boom(marker)}, f)
    with open(tmp_path / 'evil.pkl', 'rb') as f:
        pickle.load(f)
    assert marker.exists()
    marker.unlink()


# --- model weights and records -------------------------------------------------------------------


def test_load_weights(tmp_path, marker):
    p = tmp_path / 'ckpt.pt'
    torch.save({'model': {'w': Boom(marker)}}, p)
    refused(marker, lambda: load_weights(p), p)


def test_load_weights_safetensors_name(tmp_path, marker):
    "A pickle named `.safetensors` goes to the safetensors reader, which has no code path."
    p = tmp_path / 'model.safetensors'
    torch.save({'w': Boom(marker)}, p)
    refused(marker, lambda: load_weights(p), p)


def test_model_meta(tmp_path, marker):
    p = tmp_path / 'model.pt'
    torch.save(record(marker), p)
    refused(marker, lambda: model_meta(p), p)


def test_load_pretrained(tmp_path, marker):
    p = tmp_path / 'model.pt'
    torch.save(record(marker), p)
    refused(marker, lambda: load_pretrained(RandAR, p), p)


def test_create_model_pretrained_path(tmp_path, marker):
    p = tmp_path / 'model.pt'
    torch.save(record(marker), p)
    refused(marker, lambda: arclf.create_model('randar_fmnist', pretrained=p), p)


def test_create_model_pretrained_by_name(isolated, marker):
    "A registered model's weights found first in `$ARCLF_WEIGHTS`."
    p = isolated / 'weights' / model_spec('randar_fmnist').weights
    torch.save(record(marker), p)
    refused(marker, lambda: arclf.create_model('randar_fmnist', pretrained=True), p)
    refused(marker, lambda: arclf.create_classifier('randar'), p)


def test_load_model_and_classifier_from_a_file(tmp_path, marker):
    from arclf.classifiers import load_model

    p = tmp_path / 'mine.pt'
    torch.save(record(marker), p)
    refused(marker, lambda: load_model(p), p)
    refused(marker, lambda: arclf.create_classifier(str(p)), p)


# --- training state ------------------------------------------------------------------------------


def test_resume_training_state(tmp_path, marker):
    from arclf.training import resume, ResumeCB

    p = tmp_path / 'run.ckpt'
    torch.save(dict(model={'w': Boom(marker)}, opt={}, epoch=0, iter=0), p)
    refused(marker, lambda: resume(None, p), p)  # the file is read before the learner is used
    refused(marker, lambda: ResumeCB(p).before_fit(None), p)


def test_train_model_resumes_no_code(data_root, tmp_path, marker, isolated):
    "`train_model(ckpt=...)` end to end: the crafted state is read before the first step."
    from arclf.training import train_model

    p = tmp_path / 'run.ckpt'
    torch.save(dict(model={'w': Boom(marker)}, key='{}'), p)
    refused(
        marker,
        lambda: train_model(
            'dit', n_train=16, bs=8, epochs=1, ckpt=p, device='cpu', depth=1, hidden_size=16,
            log_every=0,
        ),
        p,
    )


# --- caches --------------------------------------------------------------------------------------


def test_token_cache(data_root, isolated, marker):
    "A crafted token cache is rebuilt (or refused by name), never unpickled."
    from arclf.training import encode_tokens

    ids, y = encode_tokens('vq_fmnist_s', 'test', n=4)
    (cf,) = (isolated / 'cache' / 'tokens').glob('*.pt')
    torch.save(dict(ids=Boom(marker), y=y), cf)
    try:
        ids2, y2 = encode_tokens('vq_fmnist_s', 'test', n=4)
    except ValueError as e:
        assert str(cf) in str(e) and '\n' not in str(e)
    else:
        assert torch.equal(ids2, ids) and torch.equal(y2, y)
    assert not marker.exists()


def _cifar_batches(folder: Path, payload=None):
    "A tiny `cifar-10-batches-py`: 2 images per batch, arrays pickled as the official files are."
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, n in enumerate([f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']):
        d = {
            b'data': rng.integers(0, 256, (2, 3072), dtype=np.uint8),
            b'labels': [i % 10, (i + 1) % 10],
        }
        if payload is not None and n == 'data_batch_1':
            d[b'filenames'] = payload
        with open(folder / n, 'wb') as f:
            pickle.dump(d, f, protocol=4)


def test_cifar_python_batches_load(isolated):
    "The benign tiny batches load (so the next test fails on its payload, not on the layout)."
    _cifar_batches(isolated / 'data' / 'cifar-10-batches-py')
    ds = arclf.load_dataset('cifar10', 'train', root=isolated / 'data')
    assert ds.x.shape == (10, 3, 32, 32) and ds.y.tolist()[:2] == [0, 1]


def test_cifar_python_batches_run_no_code(isolated, marker):
    src = isolated / 'data' / 'cifar-10-batches-py'
    _cifar_batches(src, payload=Boom(marker))
    refused(
        marker,
        lambda: arclf.load_dataset('cifar10', 'train', root=isolated / 'data'),
        src / 'data_batch_1',
    )


def test_cifar_array_cache(isolated, marker):
    "A crafted `.npz` cache (an object array of payloads) is rebuilt or refused, never unpickled."
    _cifar_batches(isolated / 'data' / 'cifar-10-batches-py')
    ds = arclf.load_dataset('cifar10', 'test', root=isolated / 'data')
    caches = list((isolated / 'cache').rglob('*.npz'))
    assert caches, 'no array cache was written'
    for c in caches:
        arr = np.empty(1, dtype=object)
        arr[0] = Boom(marker)
        with open(c, 'wb') as f:
            np.savez(f, test_x=arr, test_y=arr, train_x=arr, train_y=arr)
    try:
        ds2 = arclf.load_dataset('cifar10', 'test', root=isolated / 'data')
    except ValueError as e:
        assert any(str(c) in str(e) for c in caches) and '\n' not in str(e)
    else:
        assert torch.equal(ds2.x, ds.x) and torch.equal(ds2.y, ds.y)
    assert not marker.exists()


# --- evaluations and stored scores ---------------------------------------------------------------


from test_stale import Toy  # noqa: E402  (the one toy dataset of the tests)


@pytest.fixture(scope='module')
def tiny_clf():
    torch.manual_seed(0)
    m = arclf.create_model('randar_fmnist', vocab_size=16, dim=32, n_layer=1, n_head=2).eval()
    return arclf.RandARClassifier(m)


def test_partial_evaluation(tmp_path, marker, tiny_clf):
    x, y = torch.randint(0, 16, (3, 49)), torch.tensor([0, 1, 2])
    out = tmp_path / 'eval.pt'
    part = Path(f'{out}.part')
    torch.save(dict(scores=Boom(marker), done=None, key={}, seconds=0.0), part)
    refused(marker, lambda: arclf.evaluate(tiny_clf, (x, y), 2, range(3), out=out), part)


def test_finished_evaluation(tmp_path, marker, tiny_clf):
    from arclf.reproduce import cached_eval

    ds = Toy(torch.randint(0, 16, (3, 49)), torch.tensor([0, 1, 2]))
    p = tmp_path / 'eval_randar_clean_3.pt'
    torch.save(dict(scores=Boom(marker), key={}), p)
    refused(marker, lambda: cached_eval(tiny_clf, ds, 2, p, progress=False), p)


def test_diffusion_study_scores(data_root, tmp_path, marker):
    from arclf.diffusion_study import report

    f = tmp_path / 'scores_dit.pt'
    torch.save(dict(scores=Boom(marker), y=torch.zeros(10), classes=torch.arange(10)), f)
    refused(marker, lambda: report(tmp_path), f)
