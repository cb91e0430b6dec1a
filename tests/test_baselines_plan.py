"""The rest of Table 2 in a reproduction plan (VAR, A-VARC with and without class pruning, the ERM
networks) and the discriminative family of `train_model`: trained through the one engine,
resumed exactly, scored through the one results path."""
import json
from pathlib import Path
import pytest
import torch


def _write(d: Path, models: dict, **eval_kw) -> Path:
    plan = dict(name='tiny_baselines', seed=0,
                eval=dict(dict(ks=[1], avarc_ns=[1, 2], shift_K=1, shift_avarc_n=2,
                               shifts=['jpeg']), **eval_kw),
                datasets=dict(fashion_mnist=dict(n_per_class=1, models=models)))
    p = d / 'plan.json'
    p.write_text(json.dumps(plan))
    return p


TINY_VAR = dict(epochs=1, bs=16, n_train=32, tokenizer_epochs=1, depth=1, dim=32, n_head=2)
TINY_VIT = dict(family='discriminative', epochs=1, bs=16, n_train=32, depth=1)


@pytest.mark.parametrize('models, why', [
    (dict(bogus=dict(weights='x')), "unknown classifier 'bogus'"),
    (dict(avarc=dict(same_as='var')), '"same_as" lets A-VARC and VAR score one model'),
    (dict(var=dict(same_as='avarc'), avarc=dict(same_as='var')), '"same_as" lets A-VARC'),
    (dict(vit=dict(weights='x'), avarc=dict(same_as='vit')), 'the other of var/avarc'),
    (dict(vit=dict(weights='x'), resnet=dict(same_as='vit')), 'the other of var/avarc'),
    (dict(vit=dict(train=dict(preset='resnet18_fmnist'))), "preset 'resnet18_fmnist' is not a vit"),
    (dict(var=dict(weights='x', same_as='var')), 'exactly one of "weights", "train", "study"'),
    (dict(dit=dict(weights='x', study='dit')), 'exactly one of "weights", "train", "study"'),
    (dict(randar=dict(study='randar_raster')), "scores is 'randar', not 'randar_raster'"),
    (dict(vit=dict(study='dit')), 'the study (notebook 09a) trains no vit model'),
])
def test_plan_refuses_bad_classifiers(tmp_path, models, why):
    from arclf.reproduce import load_plan

    with pytest.raises(ValueError, match=why.replace('(', r'\(').replace(')', r'\)')):
        load_plan(_write(tmp_path, models))


def test_plan_scores_the_study_model_where_the_study_left_it(tmp_path):
    """`"study": NAME` is the latest curve point of `arclf study train NAME` under runs/study; if
    there is none yet, the error gives the command that trains it."""
    from arclf.reproduce import load_plan, model_file

    p = load_plan(_write(tmp_path, dict(raster=dict(study='randar_raster'))))
    with pytest.raises(FileNotFoundError, match='arclf study train randar_raster --dataset '
                       'fashion_mnist'):
        model_file(p, 'fashion_mnist', 'raster', runs=tmp_path / 'runs')
    f = tmp_path / 'runs' / 'study' / 'fashion_mnist' / 'randar_raster.pt'
    f.parent.mkdir(parents=True)
    f.write_bytes(b'')
    assert model_file(p, 'fashion_mnist', 'raster', runs=tmp_path / 'runs') == f
    # results stored for it stand only while the study's model is the one they scored
    from arclf.data import file_digest
    from arclf.reproduce import _same_models

    r = dict(models=dict(raster=dict(digest=file_digest(f)[:16])))
    assert _same_models(p, 'fashion_mnist', r, runs=tmp_path / 'runs')
    f.write_bytes(b'the study went on')
    assert not _same_models(p, 'fashion_mnist', r, runs=tmp_path / 'runs')


@pytest.mark.parametrize('stages, why', [
    ('3:1', 'stage 1'), ([[3, 1, 4], [1, 5, 5]], 'is a string'),
])
def test_plan_refuses_bad_avarc_stages_before_any_work(tmp_path, stages, why):
    from arclf.reproduce import load_plan

    models = dict(var=dict(weights='x'), avarc=dict(same_as='var'))
    with pytest.raises(ValueError, match=why):
        load_plan(_write(tmp_path, models, avarc_stages=stages))
    with pytest.raises(ValueError, match='no dataset names an avarc classifier'):
        load_plan(_write(tmp_path, dict(var=dict(weights='x')), avarc_stages='3:1:4,1:5:5'))


def test_stored_results_are_kept_only_by_what_made_them(tmp_path):
    """A dataset's stored results stand if the settings its classifiers read are unchanged: a
    stamp that still lists every setting, or none at all (the file's own plan says)."""
    from arclf.reproduce import EVAL_DEFAULTS, _stamp, _stored_stamp, load_plan

    p = load_plan(_write(tmp_path, dict(randar=dict(weights='x'))))
    E = {**EVAL_DEFAULTS, **p['eval']}
    now = _stamp(p, E, 'fashion_mnist')
    full = dict(now, eval=E)  # a stamp of the time it held every setting
    res = dict(results=dict(fashion_mnist=dict(stamp=full)))
    assert _stored_stamp(res, 'fashion_mnist') == now
    changed = dict(full, eval=dict(E, ks=[1, 2, 3]))
    assert _stored_stamp(dict(results=dict(fashion_mnist=dict(stamp=changed))),
                         'fashion_mnist') != now
    legacy = dict(plan=json.loads(json.dumps(p)), results=dict(fashion_mnist={}))
    assert _stored_stamp(legacy, 'fashion_mnist') == now
    legacy['plan']['seed'] = 1
    assert _stored_stamp(legacy, 'fashion_mnist') != now
    assert _stored_stamp(dict(results=dict(fashion_mnist={})), 'fashion_mnist') is None


def test_stamp_depends_only_on_the_settings_its_classifiers_read(tmp_path):
    "A-VARC's settings leave a RandAR-only dataset's stored results standing, and its own not."
    from arclf.reproduce import EVAL_DEFAULTS, _stamp, load_plan

    def stamp(models, **kw):
        p = load_plan(_write(tmp_path, models, **kw))
        return _stamp(p, {**EVAL_DEFAULTS, **p['eval']}, 'fashion_mnist')

    ar, av = dict(randar=dict(weights='x')), dict(var=dict(weights='x'), avarc=dict(same_as='var'))
    assert stamp(ar) == stamp(ar, sigma=0.5, avarc_ns=[1, 3])
    assert stamp(av) != stamp(av, sigma=0.5)
    assert stamp(av) != stamp(av, avarc_stages='2:1:3,1:2:5')
    assert stamp(ar) != stamp(ar, ks=[1, 2])


def test_a_dataset_may_set_its_own_budgets(tmp_path):
    """A dataset's "eval" overrides the plan's budgets for it alone: its stamp follows them, and
    an unknown key fails before any work."""
    from arclf.reproduce import EVAL_DEFAULTS, _stamp, load_plan

    f = _write(tmp_path, dict(randar=dict(weights='x')))
    plan = json.loads(f.read_text())
    E = {**EVAL_DEFAULTS, **plan['eval']}
    before = _stamp(load_plan(f), E, 'fashion_mnist')
    plan['datasets']['fashion_mnist']['eval'] = dict(ks=[1, 2])
    f.write_text(json.dumps(plan))
    after = _stamp(load_plan(f), E, 'fashion_mnist')
    assert after['eval']['ks'] == [1, 2] and before['eval']['ks'] == [1]
    plan['datasets']['fashion_mnist']['eval'] = dict(kz=[1])
    f.write_text(json.dumps(plan))
    with pytest.raises(ValueError, match="fashion_mnist: unknown eval keys \\['kz'\\]"):
        load_plan(f)


def test_budget_rows_count_a_networks_forwards_and_give_intervals():
    from arclf.experiments import budget_rows

    g = torch.Generator().manual_seed(0)
    r = dict(scores=torch.randn(40, 10, 1, generator=g), classes=list(range(10)),
             y=torch.randint(0, 10, (40,), generator=g), seconds_per_image=0.01,
             forwards_per_image=1)
    (o,) = budget_rows(r, 'vit', [1])
    assert o['forwards'] == 1 and o['lo'] <= o['acc'] <= o['hi'] and o['hi'] > o['lo']
    r = dict(r, scores=torch.randn(40, 10, 4, generator=g), forwards_per_image=40)
    rows = budget_rows(r, 'avarc', [1, 2, 4])
    assert [o['forwards'] for o in rows] == [10, 20, 40]
    assert all(o['lo'] <= o['acc'] <= o['hi'] for o in rows)


def test_discriminative_family_refuses_options_of_other_families(data_root, tmp_path):
    from arclf.training import train_model

    kw = dict(n_train=16, bs=8, root=data_root, log_every=0)
    with pytest.raises(ValueError, match='order, tokenizer and noise_t are not its options'):
        train_model('discriminative', out=tmp_path / 'a.pt', order='raster', **kw)
    with pytest.raises(ValueError, match='not for discriminative'):
        train_model('discriminative', out=tmp_path / 'a.pt', curve=tmp_path / 'c.json',
                    n_valid=4, **kw)
    with pytest.raises(ValueError, match=r"vit_erm_fmnist: config overrides \['bogus'\]"):
        train_model('discriminative', out=tmp_path / 'a.pt', bogus=1, **kw)
    with pytest.raises(ValueError, match='is a randar model, not a discriminative one'):
        train_model('discriminative', out=tmp_path / 'a.pt', preset='randar_fmnist', **kw)
    assert not (tmp_path / 'a.pt').exists()


def test_discriminative_training_resumes_exactly(data_root, tmp_path):
    """Killed after 3 of its 4 steps and resumed from its checkpoint: the same weights and losses
    as the run that was never stopped; the saved network scores through `create_classifier`."""
    from arclf.classifiers import create_classifier
    from arclf.discriminative import DiscriminativeClassifier
    from arclf.training import train_model

    from conftest import Killed, kill_after

    kw = dict(n_train=32, bs=8, epochs=1, warmup=1, log_every=0, root=data_root, depth=1,
              preset='vit_erm_fmnist')
    train_model('discriminative', out=tmp_path / 'a.pt', **kw)
    ckpt = tmp_path / 'b.ckpt'
    with pytest.raises(Killed):
        train_model('discriminative', out=tmp_path / 'b.pt', ckpt=ckpt, ckpt_every=1,
                    extra_cbs=[kill_after(3)], **kw)
    assert ckpt.exists() and not (tmp_path / 'b.pt').exists()
    train_model('discriminative', out=tmp_path / 'b.pt', ckpt=ckpt, **kw)
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ('a.pt', 'b.pt'))
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert a['meta']['record']['loss_curve'] == b['meta']['record']['loss_curve']
    assert a['meta']['recipe']['overrides'] == {'depth': 1}
    with pytest.raises(ValueError, match='another'):  # a checkpoint of another recipe
        train_model('discriminative', out=tmp_path / 'c.pt', ckpt=ckpt, **dict(kw, lr=0.1))
    assert isinstance(create_classifier(tmp_path / 'a.pt'), DiscriminativeClassifier)


def test_plan_with_var_avarc_pruning_and_a_network(data_root, tmp_path, monkeypatch):
    """A plan naming VAR (trained in its two stages), A-VARC on the same model (`same_as`, with
    class pruning) and an ERM ViT: every row in Table 2 and Fig. 6 with its interval, A-VARC's
    pruned row with its forwards, and a second run that trains and scores nothing."""
    from arclf.reproduce import reproduce

    monkeypatch.setenv('ARCLF_CACHE', str(tmp_path / 'cache'))
    models = dict(var=dict(train=TINY_VAR), avarc=dict(same_as='var'), vit=dict(train=TINY_VIT))
    plan = _write(tmp_path, models, avarc_stages='3:1:3,1:2:5')
    runs, out = tmp_path / 'runs', tmp_path / 'results'
    res = reproduce(plan, out, runs, progress=False)['results']['fashion_mnist']
    t2 = {(o['classifier'], o['shift']): o for o in res['table2']}
    assert set(t2) == {(k, s) for k in ('var', 'avarc', 'vit', 'avarc_pruned')
                       for s in ('none', 'jpeg')}
    assert all(o['images'] == 10 and o['lo'] <= o['acc'] <= o['hi'] for o in t2.values())
    f6 = {(o['classifier'], o['n']): o for o in res['fig6']}
    assert set(f6) == {('var', 1), ('avarc', 1), ('avarc', 2), ('vit', 1), ('avarc_pruned', 2)}
    # 10 classes on 3 of 5 scales, then 3 survivors with 2 samples each
    assert f6[('avarc_pruned', 2)]['forwards'] == 10 + 3 * 2
    assert (f6[('vit', 1)]['forwards'], f6[('avarc', 2)]['forwards']) == (1, 20)
    # A-VARC's first sample is VAR's likelihood: the same model and images, the same scores (its
    # S = 1 row is the mean over its disjoint samples, the second one smoothed, so not VAR's row)
    ev = runs / 'reproduce-tiny_baselines' / 'fashion_mnist'
    sv, sa = (torch.load(ev / f'eval_{k}_clean_10.pt', weights_only=False)['scores']
              for k in ('var', 'avarc'))
    assert sa.shape[-1] == 2 and torch.equal(sa[..., 0], sv[..., 0])
    assert not torch.equal(sa[..., 1], sv[..., 0])
    assert res['models']['avarc']['file'] == res['models']['var']['file']
    assert res['speed'] == {}  # no RandAR in this plan: nothing to compare its speed with
    md = (out / 'tiny_baselines' / 'README.md').read_text()
    assert 'A-VARC (smoothing and class pruning) | stages 3:1:3,1:2:5' in md
    before = {p: p.stat().st_mtime_ns for p in ev.glob('*.pt')}
    reproduce(plan, out, runs, progress=False)
    assert {p: p.stat().st_mtime_ns for p in ev.glob('*.pt')} == before


def test_findings_state_the_new_rows(tmp_path):
    """The findings read a reproduction's VAR / A-VARC rows as 'the AR classifier beats ...' and the
    ERM rows as 'competitive with ...': contradicted only when the AR classifier is less accurate
    beyond the interval."""
    from arclf.study import _reproduce_rows, findings

    def f6(k, n, acc):
        return dict(classifier=k, n=n, acc=acc, s_per_image=0.1 * n)

    def t2(k, n, acc, sh='none'):
        return dict(classifier=k, n=n, acc=acc, shift=sh, images=1000)

    ep = dict(recipe=dict(epochs=1))
    res = dict(results=dict(fashion_mnist=dict(
        images=1000, models={k: ep for k in ('randar', 'var', 'avarc', 'vit', 'resnet')},
        fig6=[f6('randar', 1, 0.80), f6('randar', 5, 0.85), f6('var', 1, 0.70),
              f6('avarc', 5, 0.84), f6('vit', 1, 0.84), f6('resnet', 1, 0.92)],
        table2=[t2('randar', 5, 0.85), t2('avarc', 5, 0.84), t2('randar', 5, 0.6, 'jpeg'),
                t2('avarc', 5, 0.5, 'jpeg')],
        speed={})))
    f = tmp_path / 'results.json'
    f.write_text(json.dumps(res))
    rows = {r['claim']: r for r in _reproduce_rows(f)}
    ds = ' (fashion_mnist)'
    assert rows['the AR classifier beats VAR' + ds]['verdict'] == 'reproduced'
    r = rows['the AR classifier beats A-VARC' + ds]
    assert (r['verdict'], r['a'], r['b']) == ('inconclusive', 'RandAR K=5', 'A-VARC S=5')
    assert rows['AR is more accurate than A-VARC under jpeg' + ds]['verdict'] == 'reproduced'
    assert rows['the AR classifier is competitive with the ERM ViT' + ds]['verdict'] == 'reproduced'
    r = rows['the AR classifier is competitive with the ERM ResNet-18' + ds]
    assert r['verdict'] == 'contradicted' and r['hi'] < -0.03  # 7 points behind
    res['results']['fashion_mnist']['fig6'][4]['acc'] = 0.87  # 2 points behind: within reach
    f.write_text(json.dumps(res))
    r = {r['claim']: r for r in _reproduce_rows(f)}['the AR classifier is competitive with the '
                                                    'ERM ViT' + ds]
    assert r['verdict'] == 'inconclusive' and r['lo'] < -0.03 < r['hi']
    # a RandAR trained 8 epochs against a VAR of one: no verdict in the findings; the row says why
    res['results']['fashion_mnist']['models']['randar'] = dict(epochs=8.05, recipe=dict(epochs=32))
    root = tmp_path / 'results'
    (root / 'reproduce/cpu').mkdir(parents=True)
    (root / 'reproduce/cpu/results.json').write_text(json.dumps(res))
    r = {r['claim']: r for r in findings(root)}['the AR classifier beats VAR' + ds]
    assert (r['verdict'], r['training']) == ('inconclusive', '1/8.1 epoch(s)'), r
    assert 'unequal training' in r['note'] and r['lo'] > 0  # the interval alone would say reproduced
    # so is A-VARC with class pruning, which scores the same one-epoch VAR: its speed row too
    fast, slow = dict(acc=0.85, s_per_image=0.1), dict(acc=0.7, s_per_image=0.5)
    res['results']['fashion_mnist']['speed'] = {
        'avarc_pruned': [dict(ratio=None, fast_cheapest=fast, slow_best=slow)]}
    (root / 'reproduce/cpu/results.json').write_text(json.dumps(res))
    r = {r['claim']: r for r in findings(root)}['the AR classifier is faster than A-VARC with '
                                                'pruning' + ds]
    assert (r['verdict'], r['training']) == ('inconclusive', '1/8.1 epoch(s)'), r


def test_var_learning_curve(data_root, tmp_path):
    """`train_model('var', curve=...)`: the validation loss on the held-out images' teacher-forcing
    data falls, each point scores A-VARC with the run's VAE, and the latest point's weights load
    by path as an A-VARC classifier."""
    from arclf.avarc import AVARClassifier
    from arclf.classifiers import create_classifier
    from arclf.training import train_model

    c = tmp_path / 'curve.json'
    train_model('var', out=tmp_path / 'var.pt', n_train=64, n_valid=16, bs=8, epochs=2,
                tokenizer_epochs=1, depth=1, dim=32, n_head=2, curve=c, curve_first=2,
                curve_n=2, log_every=0, tol=None, root=data_root)
    pts = json.loads(c.read_text())['points']
    assert [p['step'] for p in pts] == [2, 4, 8, 16]
    assert all(p['n'] == 2 and p['images'] == 16 for p in pts)
    assert pts[-1]['valid_loss'] < pts[0]['valid_loss']
    clf = create_classifier(c.with_suffix('.pt'))
    assert isinstance(clf, AVARClassifier) and clf.vae.cfg.patch_nums == (1, 2, 3, 5, 7)


@pytest.mark.parametrize('fast, slow, fate', [
    ([(1, 0.80, 0.2), (5, 0.85, 1.0)], [(1, 0.82, 0.2)], 'contradicted'),  # slower where matched
    ([(1, 0.80, 0.1), (5, 0.85, 0.5)], [(5, 0.82, 2.0)], 'reproduced'),  # faster where matched
    ([(1, 0.90, 0.1)], [(25, 0.50, 2.0)], 'reproduced'),  # cheaper and better: no ratio needed
    ([(1, 0.90, 1.0)], [(1, 0.70, 0.1)], 'inconclusive'),  # better but slower: no matched point
    ([(1, 0.80, 0.1), (5, 0.85, 0.5)], [(5, 0.82, 0.25)], 'inconclusive'),  # 1.3x: timing noise
    ([(1, 0.90, 0.1)], [(25, 0.50, 0.12)], 'inconclusive'),  # better, 1.2x cheaper: noise too
])
def test_speed_findings_say_which_way(tmp_path, fast, slow, fate):
    "The speed claim is reproduced only where RandAR is the faster one, and says how much."
    from arclf.reproduce import speed_ratio
    from arclf.study import _reproduce_rows

    def rows(k, pts):
        return [dict(classifier=k, n=n, acc=a, s_per_image=t) for n, a, t in pts]

    fig6 = rows('randar', fast) + rows('var', slow)
    res = dict(results=dict(fashion_mnist=dict(
        images=1000, models={}, fig6=fig6, table2=[],
        speed=dict(var=speed_ratio(rows('randar', fast), rows('var', slow))))))
    f = tmp_path / 'results.json'
    f.write_text(json.dumps(res))
    (r,) = [r for r in _reproduce_rows(f) if r['claim'].startswith('the AR classifier is faster')]
    assert r['verdict'] == fate, r['note']
    from arclf.study import findings_markdown
    assert f"**{fate}**" in findings_markdown([r])  # a row without a difference renders too
    if fate == 'contradicted':
        assert 'slower' in r['note']
