"""Nothing stale, nothing mixed: a stored evaluation, partial evaluation, trained model, stored
score file or merged result is used again only if everything that determines it is unchanged;
changing any one input scores (or trains) again, or stops with a one-line error naming the file."""

import json
from pathlib import Path

import pytest
import torch

import arclf
from arclf.core import atomic_save, save_pretrained
from arclf.scorer import RandARClassifier, StaleEvaluation, evaluate, key_diff

torch.set_num_threads(2)


class Toy:
    "A dataset of token ids (the classifier takes them as they are): x, y, classes, len."

    def __init__(self, x, y, classes=3):
        self.x, self.y, self.classes = x, y, list(range(classes))

    def __len__(self):
        return len(self.x)


class Counting(RandARClassifier):
    "Counts the batches it scores."

    calls = 0

    def score(self, *a, **k):
        Counting.calls += 1
        return super().score(*a, **k)


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=16, dim=32, n_layer=1, n_head=2, grid=4)
    m = arclf.create_model('randar_fmnist', **{**cfg, **kw}).eval()
    with torch.no_grad():  # class dependence (the output layer starts at zero)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    return Toy(torch.randint(0, 16, (4, 16), generator=g), torch.tensor([0, 1, 2, 0]))


def one_line_naming(e, path):
    msg = str(e)
    assert str(path) in msg and '\n' not in msg, msg


# --- evaluate(out=...): the partial file ---------------------------------------------------------


def partial_of(clf, data, out, n=2, seed=0):
    "A partial file of `clf` on `data` with the first image done (the run stopped at the second)."
    calls, score = [0], clf.score

    def stop_at_second(*a, **k):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return score(*a, **k)

    clf.score = stop_at_second  # an instance attribute: the classifier's settings stay the same
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate(clf, data, n, range(3), bs=1, seed=seed, out=out, save_every=1, progress=False)
    finally:
        del clf.score
    part = Path(f'{out}.part')
    st = torch.load(part, weights_only=True)
    assert st['rows'].tolist() == [0]  # the finished rows only
    return part, st['key']


@pytest.mark.parametrize(
    'change',
    ['weights', 'config', 'setting', 'data', 'seed', 'n'],
)
def test_partial_file_of_another_evaluation_is_never_resumed(tmp_path, data, change):
    m = tiny_model()
    out = tmp_path / 'r.pt'
    base = RandARClassifier(m)
    # the partial file is written by a classifier of the same class as the one resuming
    part, _ = partial_of(base, data, out)
    clf, d, seed, n = RandARClassifier(m), data, 0, 2
    if change == 'weights':
        clf = RandARClassifier(tiny_model(seed=1))
    elif change == 'config':  # same weights, another head count: only the config tells
        m2 = tiny_model(n_head=4)
        m2.load_state_dict(m.state_dict())
        clf = RandARClassifier(m2)
    elif change == 'setting':
        clf = RandARClassifier(m, raster=True)
    elif change == 'data':
        x = data.x.clone()
        x[3, 0] = (x[3, 0] + 1) % 16  # one token of an image not scored yet
        d = Toy(x, data.y)
    elif change == 'seed':
        seed = 1
    else:
        n = 3
    with pytest.raises(StaleEvaluation) as e:
        evaluate(clf, d, n, range(3), bs=1, seed=seed, out=out, progress=False)
    one_line_naming(e.value, part)
    assert 'another setting' in str(e.value)
    assert isinstance(e.value, ValueError) and e.value.path == part
    field = dict(weights='weights', config='configs.model.n_head', setting='classifier.raster',
                 data='data', seed='seed', n='n')[change]
    assert field in str(e.value), str(e.value)
    # and the same evaluation resumes from it
    r = evaluate(base, data, 2, range(3), bs=1, out=out, progress=False)
    full = evaluate(base, data, 2, range(3), bs=4, progress=False)
    torch.testing.assert_close(r['scores'], full['scores'])


@pytest.mark.parametrize('content', ['truncated', 'not_a_dict', 'wrong_shape'])
def test_unreadable_partial_file_names_it_and_says_delete(tmp_path, data, content):
    m = tiny_model()
    clf = RandARClassifier(m)
    out = tmp_path / 'r.pt'
    part = Path(f'{out}.part')
    if content == 'truncated':
        p, _ = partial_of(clf, data, out)
        p.write_bytes(p.read_bytes()[:100])
    elif content == 'not_a_dict':
        torch.save(torch.zeros(3), part)
    else:
        _, key = partial_of(clf, data, out)
        atomic_save(
            dict(rows=torch.tensor([0]), scores=torch.zeros(1, 3, 5), key=key, seconds=0.0),
            part,
        )
    with pytest.raises(ValueError) as e:
        evaluate(clf, data, 2, range(3), bs=1, out=out, progress=False)
    one_line_naming(e.value, part)
    assert 'delete it' in str(e.value) and not isinstance(e.value, StaleEvaluation)


def test_key_diff():
    a = dict(n=2, classifier=dict(raster=False, noise_t=0.0), weights='x')
    assert key_diff(a, dict(a)) == []
    b = dict(a, classifier=dict(raster=True, noise_t=0.0), weights='y')
    assert key_diff(a, b) == ['classifier.raster', 'weights']
    assert key_diff(None, a) == ['key']


# --- reproduce.cached_eval: finished evaluations -------------------------------------------------


def test_cached_eval_scores_again_when_any_input_changes(tmp_path, data):
    from arclf.reproduce import cached_eval

    m = tiny_model()
    p = tmp_path / 'eval.pt'

    def run(clf=None, ds=data, n=2, seed=0, key=None):
        Counting.calls = 0
        r = cached_eval(clf or Counting(m), ds, n, p, seed, bs=4, progress=False, key=key)
        return r, Counting.calls

    r0, calls = run(key=dict(model='a'))
    assert calls == 1 and p.exists()
    r, calls = run(key=dict(model='a'))
    assert calls == 0, 'the same evaluation is read back'
    torch.testing.assert_close(r['scores'], r0['scores'])

    x = data.x.clone()
    x[0, 0] = (x[0, 0] + 1) % 16
    m_heads = tiny_model(n_head=4)
    m_heads.load_state_dict(m.state_dict())
    changes = dict(
        model_file=dict(key=dict(model='b')),
        weights=dict(clf=Counting(tiny_model(seed=1))),
        config=dict(clf=Counting(m_heads)),
        setting=dict(clf=Counting(m, raster=True)),
        images=dict(ds=Toy(x, data.y)),
        labels=dict(ds=Toy(data.x, torch.tensor([0, 1, 2, 1]))),
        classes=dict(ds=Toy(data.x, data.y, classes=4)),
        n=dict(n=3),
        seed=dict(seed=1),
    )
    for what, kw in changes.items():
        run(key=dict(model='a'))  # back to the first evaluation
        kw.setdefault('key', dict(model='a'))
        r, calls = run(**kw)
        assert calls == 1, f'changing the {what} must score again'
        assert torch.load(p, weights_only=True)['key'] == r['key']
        fresh = evaluate(
            kw.get('clf') or Counting(m), kw.get('ds', data), kw.get('n', 2),
            range(len(kw.get('ds', data).classes)), seed=kw.get('seed', 0), progress=False,
        )
        torch.testing.assert_close(r['scores'], fresh['scores'])


def test_cached_eval_starts_again_over_a_stale_partial_file(tmp_path, data):
    from arclf.reproduce import cached_eval

    m = tiny_model()
    p = tmp_path / 'eval.pt'
    partial_of(RandARClassifier(m, raster=True), data, p)  # interrupted, under another setting
    r = cached_eval(RandARClassifier(m), data, 2, p, bs=1, progress=False)
    full = evaluate(RandARClassifier(m), data, 2, range(3), progress=False)
    torch.testing.assert_close(r['scores'], full['scores'])
    assert not Path(f'{p}.part').exists()


def test_cached_eval_unreadable_file(tmp_path, data):
    from arclf.reproduce import cached_eval

    p = tmp_path / 'eval.pt'
    for bad in (b'PK\x03\x04 cut', None):
        if bad is None:
            torch.save([1, 2, 3], p)
        else:
            p.write_bytes(bad)
        with pytest.raises(ValueError) as e:
            cached_eval(RandARClassifier(tiny_model()), data, 2, p, progress=False)
        one_line_naming(e.value, p)
        assert 'delete it' in str(e.value)


# --- reproduce: the whole run ---------------------------------------------------------------------


def _plan(d: Path, model: Path, **eval_kw) -> Path:
    models = dict(randar=dict(weights=str(model)))
    plan = dict(
        name='tiny',
        seed=eval_kw.pop('seed', 0),
        eval=dict(dict(ks=[1, 2], shift_K=1, shifts=['gaussian_noise'], severity=3), **eval_kw),
        datasets=dict(
            fashion_mnist=dict(n_per_class=1, models=models),
            cifar10=dict(n_per_class=1, models=models),
        ),
    )
    p = d / 'tiny.json'
    p.write_text(json.dumps(plan))
    return p


def test_reproduce_reuses_only_what_the_plan_still_makes(data_root, tmp_path, monkeypatch):
    from arclf.reproduce import reproduce

    monkeypatch.setenv('ARCLF_CACHE', str(tmp_path / 'cache'))
    runs, out, model = tmp_path / 'runs', tmp_path / 'results', tmp_path / 'mine.pt'
    ev = runs / 'reproduce-tiny' / 'fashion_mnist'

    def save_model(seed):  # a one-block RandAR on the vq_fmnist_s tokens: fast to score
        m = arclf.create_model('randar_fmnist', dim=32, n_layer=1, n_head=2)
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        save_pretrained(m, model, family='randar', tokenizer='vq_fmnist_s')

    def run(**kw):
        plan = _plan(tmp_path, model, **kw)
        reproduce(plan, out, runs, datasets=['fashion_mnist'], progress=False)
        return {p.name: p.stat().st_mtime_ns for p in ev.glob('eval_*.pt')}

    def redone(before, after):
        return sorted(k for k in after if after[k] != before.get(k))

    save_model(0)
    first = run()
    assert sorted(first) == ['eval_randar_clean_10.pt', 'eval_randar_gaussian_noise_10.pt']
    assert run() == first, 'nothing changed: nothing is scored again'
    # (the Table 2 clean column reuses the first samples of the Fig. 6 evaluation: same images)
    now = run(severity=5)  # only the shifted images change
    assert redone(first, now) == ['eval_randar_gaussian_noise_10.pt']
    again = run(severity=5, ks=[1, 3])  # a larger K: the clean evaluation is redone
    assert redone(now, again) == ['eval_randar_clean_10.pt']
    save_model(1)  # another model in the same file
    other = run(severity=5, ks=[1, 3])
    assert redone(again, other) == sorted(other)
    last = run(severity=5, ks=[1, 3], seed=1)  # another seed
    assert redone(other, last) == sorted(last)

    # results of a dataset not run now are kept only if the plan still makes them so
    f = out / 'tiny' / 'results.json'
    res = json.loads(f.read_text())
    stamp = res['results']['fashion_mnist']['stamp']
    assert stamp['seed'] == 1 and stamp['eval']['ks'] == [1, 3] and stamp['eval']['severity'] == 5
    cifar = json.loads(_plan(tmp_path, model).read_text())['datasets']['cifar10']
    fm = res['results']['fashion_mnist']
    res['results']['cifar10'] = dict(fm, stamp=dict(stamp, dataset=cifar))  # as the plan makes it
    f.write_text(json.dumps(res))
    run(severity=5, ks=[1, 3], seed=1)
    assert 'cifar10' in json.loads(f.read_text())['results']
    run(severity=5, ks=[1, 3], seed=2)  # cifar10's stored results were made with seed 1
    assert list(json.loads(f.read_text())['results']) == ['fashion_mnist']


def test_ensure_trained_refuses_a_model_or_checkpoint_of_another_recipe(tmp_path, capsys):
    from arclf.reproduce import ensure_trained

    out = tmp_path / 'randar.pt'
    recipe = dict(epochs=1, bs=8, n_train=16, tokenizer='vq_fmnist_s', log_every=0)
    # what a finished training leaves: the model and the recipe asked for
    m = tiny_model()
    save_pretrained(m, out, recipe=dict(epochs=1, bs=8), tokenizer='vq_fmnist_s')
    spec = out.with_suffix('.recipe.json')
    from arclf.reproduce import _wanted

    spec.write_text(json.dumps(_wanted('randar', 'fashion_mnist', recipe)))
    assert ensure_trained(out, 'randar', 'fashion_mnist', recipe) == out
    # log_every does not change the weights
    assert ensure_trained(out, 'randar', 'fashion_mnist', dict(recipe, log_every=5)) == out
    for k, v in dict(n_train=32, tokenizer='vq_fmnist_l', n_layer=2, lr=0.1).items():
        with pytest.raises(ValueError, match='another recipe') as e:
            ensure_trained(out, 'randar', 'fashion_mnist', dict(recipe, **{k: v}))
        assert str(out) in str(e.value) and k in str(e.value)
    with pytest.raises(ValueError, match='another recipe'):
        ensure_trained(out, 'randar', 'cifar10', recipe)
    # a model from before the recipe was kept beside it: what its record holds is compared
    spec.unlink()
    # n_train took the first images as stored before the split was class-balanced: refused
    with pytest.raises(ValueError, match="'split': \\('class-balanced', None\\)"):
        ensure_trained(out, 'randar', 'fashion_mnist', recipe)
    save_pretrained(m, out, recipe=dict(epochs=1, bs=8, split='class-balanced'),
                    tokenizer='vq_fmnist_s')
    assert ensure_trained(out, 'randar', 'fashion_mnist', recipe) == out
    with pytest.raises(ValueError, match='another recipe'):
        ensure_trained(out, 'randar', 'fashion_mnist', dict(recipe, tokenizer='vq_fmnist_l'))
    with pytest.raises(ValueError, match='another recipe'):
        ensure_trained(out, 'randar', 'fashion_mnist', dict(recipe, n_layer=2))
    # an interrupted training of another recipe is not resumed
    out.unlink()
    ckpt = out.with_suffix('.ckpt')
    ckpt.write_bytes(b'state')
    spec.write_text(json.dumps(_wanted('randar', 'fashion_mnist', dict(recipe, lr=0.1))))
    with pytest.raises(ValueError, match='interrupted training of another recipe') as e:
        ensure_trained(out, 'randar', 'fashion_mnist', recipe)
    one_line_naming(e.value, ckpt)
    spec.unlink()
    with pytest.raises(ValueError, match='unknown recipe') as e:
        ensure_trained(out, 'randar', 'fashion_mnist', recipe)
    one_line_naming(e.value, ckpt)
    spec.write_text('{"family": "randar", "rec')  # cut short
    with pytest.raises(ValueError, match='not a recipe file') as e:
        ensure_trained(out, 'randar', 'fashion_mnist', recipe)
    one_line_naming(e.value, spec)


# --- the diffusion study's stored scores ----------------------------------------------------------


def test_diffusion_report_refuses_scores_of_another_model(data_root, tmp_path, monkeypatch):
    import arclf.diffusion_study as ds

    r = ds.eval_scores('dit', n_per_class=1, n=2, out=tmp_path)
    ds.table7('dit', n_per_class=1, budget=1, out=tmp_path)
    f, t7 = tmp_path / 'scores_dit.pt', tmp_path / 'table7_dit.json'
    clf = ds.small_classifier('dit')
    assert ds.read_scores(f, 'dit', clf)['key'] == r['key']

    # the shipped model changed since: its old numbers must not appear under its name
    other = ds.small_classifier('dit')
    with torch.no_grad():
        next(other.model.parameters()).add_(0.01)
    with pytest.raises(ValueError) as e:
        ds.read_scores(f, 'dit', other)
    one_line_naming(e.value, f)
    assert 'weights' in str(e.value) and 'arclf diffusion eval --kind dit' in str(e.value)
    monkeypatch.setattr(ds, 'small_classifier', lambda kind, **kw: other)
    with pytest.raises(ValueError, match='scores_dit.pt was scored by another model'):
        ds.report(tmp_path)
    f.unlink()  # the table 7 file too
    with pytest.raises(ValueError) as e:
        ds.report(tmp_path)
    one_line_naming(e.value, t7)
    monkeypatch.undo()

    # another setting (a coarser timestep grid) or other images
    ds.eval_scores('dit', n_per_class=1, n=2, out=tmp_path)
    with pytest.raises(ValueError, match='classifier.grid'):
        ds.read_scores(f, 'dit', arclf.create_classifier('dit', step=8))
    st = torch.load(f, weights_only=True)
    atomic_save(dict(st, n_per_class=2), f)
    with pytest.raises(ValueError, match='data'):
        ds.read_scores(f, 'dit', clf)
    # a file from before keys were stored
    atomic_save({k: v for k, v in st.items() if k != 'key'}, f)
    with pytest.raises(ValueError, match='records no evaluation key'):
        ds.read_scores(f, 'dit', clf)
