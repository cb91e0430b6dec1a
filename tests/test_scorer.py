"""The order-marginalized classifier: shared orders, determinism, chunking, agreement with the
model, full-size shapes."""

import json
from pathlib import Path
import pytest
import torch
from arclf.core import create_model, layout, layout_diff
from arclf.scorer import (
    RandARClassifier,
    evaluate,
    aggregate,
    predict,
    draw_orders,
    draw_samples,
    image_generator,
    sample_scores,
    prune,
    prune_evaluate,
)

torch.set_num_threads(2)
LAYOUT = Path(__file__).parent / 'layouts' / 'randar_l_keys.json'


@pytest.fixture(scope='module')
def small():
    torch.manual_seed(0)
    m = create_model('randar_fmnist', vocab_size=64, dim=64, n_layer=2, n_head=2).eval()
    with torch.no_grad():  # a model with real class dependence (the output layer starts at zero)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randint(0, 64, (5, 49), generator=torch.Generator().manual_seed(1))
    return m, x


def test_permuting_classes_permutes_scores(small):
    m, x = small
    clf = RandARClassifier(m, chunk=7)
    a = sample_scores(clf, x, [0, 1, 2, 3], n=3, seed=0)
    b = sample_scores(clf, x, [2, 0, 3, 1], n=3, seed=0)
    assert a.shape == (5, 4, 3) and a.dtype == torch.float32
    torch.testing.assert_close(b, a[:, [2, 0, 3, 1]])
    assert a.std(1).mean() > 1e-3, 'classes must actually differ for this test to mean anything'
    # per-image candidate lists [B, M] give each image its own classes
    per = torch.tensor([[3, 1]] * 5)
    torch.testing.assert_close(sample_scores(clf, x, per, n=3, seed=0), a[:, [3, 1]])


def test_orders_shared_across_classes_and_seeded(small):
    m, x = small
    clf = RandARClassifier(m)
    one = clf.draw(x[:1], 4, torch.Generator().manual_seed(3))['order']
    assert one.shape == (1, 4, 49), 'draw samples for ONE image: [1, n, N]'
    s = draw_samples(clf, x, 4, seed=3, indices=range(5))['order']
    assert s.shape == (5, 4, 49)
    assert all(sorted(o.tolist()) == list(range(49)) for o in s.reshape(-1, 49))
    torch.testing.assert_close(s, draw_samples(clf, x, 4, seed=3, indices=range(5))['order'])
    assert not torch.equal(s, draw_samples(clf, x, 4, seed=4, indices=range(5))['order'])
    assert not torch.equal(s[0], s[1]), 'every image draws its own orders'
    # image b draws from image_generator(seed, b): the first image's orders are draw_orders from
    # that generator
    torch.testing.assert_close(s[2], draw_orders(4, 49, image_generator(3, 2)))
    # the same orders are used for every class: the same class twice gives identical columns,
    # another class not
    sc = sample_scores(clf, x, [0, 0, 1], n=4, seed=3)
    torch.testing.assert_close(sc[:, 0], sc[:, 1], rtol=0, atol=0)
    assert not torch.allclose(sc[:, 0], sc[:, 2])


def test_image_scores_depend_only_on_its_index(small):
    """An image's scores come from image_generator(seed, index): not from its batch or its position
    in it."""
    m, x = small
    clf = RandARClassifier(m)
    full = sample_scores(clf, x, [0, 1, 2], n=3, seed=7)
    part = sample_scores(clf, x[[4, 2]], [0, 1, 2], n=3, seed=7, indices=[4, 2])
    torch.testing.assert_close(part, full[[4, 2]], rtol=1e-5, atol=1e-4)
    moved = sample_scores(clf, x[[4, 2]], [0, 1, 2], n=3, seed=7)  # indices 0, 1: other orders
    assert not torch.allclose(moved, full[[4, 2]])
    # steps picks samples of the same draw
    torch.testing.assert_close(
        sample_scores(clf, x, [0, 1, 2], n=3, seed=7, steps=slice(1, 3)),
        full[..., 1:3],
        rtol=1e-5,
        atol=1e-4,
    )
    with pytest.raises(ValueError, match='indices'):
        sample_scores(clf, x, [0], n=1, indices=[0, 1])


def test_draw_orders_shape_and_seed():
    o = draw_orders(3, 10, torch.Generator().manual_seed(0))
    assert o.shape == (3, 10) and all(sorted(r.tolist()) == list(range(10)) for r in o)
    assert torch.equal(o, draw_orders(3, 10, torch.Generator().manual_seed(0)))
    assert not torch.equal(o[0], o[1])


def test_chunk_and_batch_sizes_do_not_change_results(small):
    m, x = small
    y = torch.tensor([0, 1, 2, 0, 1])
    r1 = evaluate(
        RandARClassifier(m, chunk=1), (x, y), n=3, classes=[0, 1, 2], bs=1, progress=False
    )
    r2 = evaluate(
        RandARClassifier(m, chunk=1000), (x, y), n=3, classes=[0, 1, 2], bs=5, progress=False
    )
    assert r1['scores'].shape == (5, 3, 3) and torch.isfinite(r1['scores']).all()
    torch.testing.assert_close(r1['scores'], r2['scores'], rtol=1e-5, atol=1e-4)
    assert r1['forwards_per_image'] == 3 * 3 and r1['classes'].tolist() == [0, 1, 2]
    assert (r1['key']['n'], r1['key']['classes'], r1['key']['images']) == (3, [0, 1, 2], 5)


def test_evaluate_defaults_to_all_model_classes(small):
    "classes=None: every class of the model (or dataset), not only the labels present in the data."
    m, x = small
    r = evaluate(
        RandARClassifier(m), (x, torch.zeros(5, dtype=torch.long)), n=1, bs=5, progress=False
    )
    assert r['classes'].tolist() == list(range(10)) and r['scores'].shape == (5, 10, 1)
    assert r['key']['classes'] == list(range(10)) and r['key']['n'] == 1


def test_scores_equal_teacher_forced_likelihood(small):
    m, x = small
    clf = RandARClassifier(m)
    g = torch.Generator().manual_seed(0)
    order = torch.stack([draw_orders(2, 49, g) for _ in range(5)])  # [5, 2, 49]
    sc = clf.score(x, torch.tensor([[3, 7]] * 5), {'order': order})
    assert sc.shape == (5, 2, 2)
    for b in range(5):
        for k in range(2):
            for j, c in enumerate((3, 7)):
                logits = m(x[b : b + 1], torch.tensor([c]), order[b, k][None])
                tgt = x[b : b + 1].gather(1, order[b, k][None])[..., None]
                ref = logits.log_softmax(-1).gather(-1, tgt).sum()
                torch.testing.assert_close(sc[b, j, k], ref, rtol=1e-5, atol=1e-4)
    per_token = clf.score(x, torch.tensor([[3, 7]] * 5), {'order': order}, per_token=True)
    assert per_token.shape == (5, 2, 2, 49)
    torch.testing.assert_close(per_token.sum(-1), sc, rtol=1e-5, atol=1e-4)


def test_raster_mode_uses_identity_order(small):
    m, x = small
    clf = RandARClassifier(m, raster=True)
    o = clf.draw(x[:1], 2, torch.Generator().manual_seed(0))['order']
    assert torch.equal(o, torch.arange(49).expand(1, 2, 49))
    o = draw_samples(clf, x, 2, 0, range(5))['order']
    assert torch.equal(o, torch.arange(49).expand(5, 2, 49))


def test_resumable_evaluation(small, tmp_path):
    m, x = small
    y = torch.tensor([0, 1, 2, 0, 1])

    class Boom(RandARClassifier):
        "Interrupts the evaluation at its `calls`-th batch (counting up to 3)."

        calls = 0

        def score(self, *a, **k):
            Boom.calls += 1
            if Boom.calls == 3:
                raise KeyboardInterrupt
            return super().score(*a, **k)

    full = evaluate(RandARClassifier(m), (x, y), n=2, classes=[0, 1, 2], bs=1, progress=False)
    out = tmp_path / 'r.pt'
    # interrupt after 2 saved batches by failing on the third
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            Boom(m), (x, y), n=2, classes=[0, 1, 2], bs=1, out=out, save_every=1, progress=False
        )
    part = torch.load(Path(f'{out}.part'), weights_only=True)
    assert part['rows'].tolist() == [0, 1] and part['scores'].shape == (2, 3, 2)  # done rows only
    # a partial file of another setting is refused, not silently mixed in
    with pytest.raises(ValueError, match='another setting'):
        evaluate(
            Boom(m), (x, y), n=3, classes=[0, 1, 2], bs=1, out=out, save_every=1, progress=False
        )
    Boom.calls = -100
    res = evaluate(
        Boom(m), (x, y), n=2, classes=[0, 1, 2], bs=1, out=out, save_every=1, progress=False
    )
    assert Boom.calls == -100 + 3, 'only the 3 missing images are scored again'
    torch.testing.assert_close(res['scores'], full['scores'])
    assert not Path(f'{out}.part').exists() and out.exists()
    saved = torch.load(out, weights_only=True)
    torch.testing.assert_close(saved['scores'], full['scores'])


def test_partial_file_of_another_classifier_setting_is_refused(small, tmp_path):
    m, x = small
    y = torch.tensor([0, 1, 2, 0, 1])

    class Stop(RandARClassifier):
        "Stops the evaluation at its second batch."

        calls = 0

        def score(self, *a, **k):
            Stop.calls += 1
            if Stop.calls == 2:
                raise KeyboardInterrupt
            return super().score(*a, **k)

    out = tmp_path / 'r.pt'
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            Stop(m, raster=True),
            (x, y),
            n=2,
            classes=[0, 1],
            bs=1,
            out=out,
            save_every=1,
            progress=False,
        )
    assert Path(f'{out}.part').exists()
    with pytest.raises(ValueError, match='another setting'):
        evaluate(
            Stop(m, raster=False),
            (x, y),
            n=2,
            classes=[0, 1],
            bs=1,
            out=out,
            save_every=1,
            progress=False,
        )


def test_pruning_keeps_survivor_scores(small):
    m, x = small
    cls = [0, 1, 2, 3]
    y0 = torch.zeros(5, dtype=torch.long)
    full = evaluate(RandARClassifier(m), (x, y0), n=4, classes=cls, progress=False)['scores']
    lb = aggregate(full)
    pr = prune(RandARClassifier(m), x, cls, [(2, 2), (4, 1)], seed=0)
    assert pr['pred'].shape == (5,) and pr['scores'].shape == (5, 4)
    assert (torch.isfinite(pr['scores']).sum(1) == 1).all(), 'one class survives the last stage'
    winners = pr['scores'].argmax(1)
    torch.testing.assert_close(
        pr['scores'].gather(1, winners[:, None])[:, 0], lb.gather(1, winners[:, None])[:, 0]
    )
    assert torch.equal(pr['pred'], torch.tensor(cls)[winners])
    assert (pr['forwards'] == 4 * 2 + 2 * 2).all()
    # the first stage keeps the 2 best classes after 2 samples; the winner is the better of those
    # after 4
    top2 = aggregate(full[..., :2]).topk(2, -1).indices
    assert all(int(w) in t.tolist() for w, t in zip(winners, top2))
    ref = lb.gather(1, top2).argmax(1)
    assert torch.equal(winners, top2.gather(1, ref[:, None])[:, 0])
    # a plan that keeps every class is the plain lower-bound prediction
    keep_all = prune(RandARClassifier(m), x, cls, [(4, 4)], seed=0)
    assert torch.equal(keep_all['pred'], predict(full, cls)[:, 0])
    torch.testing.assert_close(keep_all['scores'], lb)


def test_prune_evaluate_matches_prune(small):
    m, x = small
    y = torch.tensor([0, 1, 2, 0, 1])
    plan = [(1, 2), (3, 1)]  # 3 classes x 1 sample, then the best 2 x 2 more samples
    r = prune_evaluate(
        RandARClassifier(m), (x, y), plan, classes=[0, 1, 2], bs=2, seed=4, progress=False
    )
    ref = prune(RandARClassifier(m), x, [0, 1, 2], plan, seed=4)
    assert torch.equal(r['pred'], ref['pred'])
    assert r['acc'] == (ref['pred'] == y).float().mean().item()
    assert r['forwards_per_image'] == 3 * 1 + 2 * 2 and r['plan'] == plan
    with pytest.raises(ValueError, match='bad pruning plan'):
        prune(RandARClassifier(m), x, [0, 1, 2], [(2, 1), (1, 1)])


def test_predict_method(small):
    m, x = small
    clf = RandARClassifier(m)
    p = clf.predict(x, n=3, seed=2)
    assert p.shape == (5,) and p.dtype == torch.long and ((0 <= p) & (p < 10)).all()
    ref = predict(sample_scores(clf, x, range(10), 3, seed=2), list(range(10)))[:, 0]
    assert torch.equal(p, ref)
    sub = clf.predict(x, n=3, classes=[4, 6], seed=2)
    assert set(sub.tolist()) <= {4, 6}


def test_bad_inputs(small):
    m, x = small
    clf = RandARClassifier(m)
    with pytest.raises(ValueError, match='49'):
        sample_scores(clf, x[:, :10], [0], 1)
    with pytest.raises(ValueError, match='vocabular'):
        sample_scores(clf, x + 100, [0], 1)
    with pytest.raises(ValueError, match='no tokenizer'):
        sample_scores(clf, torch.rand(2, 1, 28, 28), [0], 1)
    with pytest.raises(ValueError, match='NaN'):
        aggregate(torch.tensor([[[float('nan')]]]))
    with pytest.raises(ValueError, match='at least 1'):
        sample_scores(clf, x, [0], 0)
    # candidate classes must be model classes: the null class (id 10 here) and negatives are refused
    with pytest.raises(ValueError, match=r'\[0, 9\].*null class'):
        sample_scores(clf, x, [0, 10], 1)
    with pytest.raises(ValueError, match=r'\[0, 9\]'):
        sample_scores(clf, x, [-1, 2], 1)
    with pytest.raises(ValueError, match='null class'):
        evaluate(clf, (x, torch.zeros(5, dtype=torch.long)), n=1, classes=[3, 10], progress=False)
    with pytest.raises(ValueError, match='null class'):
        prune(clf, x, [3, 10], [(1, 1)])
    with pytest.raises(ValueError, match='unknown rule'):
        aggregate(torch.zeros(1, 2, 3), 'median')
    with pytest.raises(ValueError, match='noise_t'):
        RandARClassifier(m, noise_t=1.5)
    tok = create_model('vq_fmnist_s', ch=8, z_channels=8)  # 256 codes for a 64-token model
    with pytest.raises(ValueError, match='256 codes'):
        RandARClassifier(m, tok)


def test_test_time_noise_is_drawn_per_sample(small):
    """With noise_t > 0 every sample noises the image's latent with its own draw from the image's
    generator: other ids per sample, the same ids for the same (seed, index)."""
    m, _ = small
    tok = create_model('vq_fmnist_s', ch=8, z_channels=8, codebook_size=64).eval()
    clf = RandARClassifier(m, tok, noise_t=0.5)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = clf.prepare(x)
    assert z.shape == (3, 8, 7, 7) and z.is_floating_point()
    d = clf.draw(z[:1], 4, torch.Generator().manual_seed(1))
    assert d['order'].shape == (1, 4, 49) and d['noise'].shape == (1, 4, 8, 7, 7)
    smp = draw_samples(clf, z, 4, seed=1, indices=range(3))
    ids = clf.sample_ids(z, smp)
    assert ids.shape == (3, 4, 49) and ids.dtype == torch.long
    assert not torch.equal(ids[0, 0], ids[0, 1]), 'each sample gets its own noise'
    again = clf.sample_ids(z, draw_samples(clf, z, 4, seed=1, indices=range(3)))
    assert torch.equal(ids, again)
    clean = RandARClassifier(m, tok).prepare(x)
    assert clean.shape == (3, 49) and not torch.equal(ids[:, 0], clean)
    with pytest.raises(ValueError, match='needs images'):
        clf.prepare(clean)


def test_randar_l_scores_a_256_token_image_with_a_class_subset():
    """Full-size shapes end to end: a RandAR-L with random weights (official layout) scores 1 image,
    2 of 1000 classes."""
    with torch.device('meta'):
        m = create_model('randar_l')
    assert layout_diff(json.loads(LAYOUT.read_text()), layout(m)) == ''
    m = m.to_empty(device='cpu')
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.02)
    clf = RandARClassifier(m.eval(), chunk=2)
    x = torch.randint(0, 16384, (1, 256), generator=torch.Generator().manual_seed(0))
    s = sample_scores(clf, x, [3, 997], n=1, seed=0)
    assert s.shape == (1, 2, 1) and torch.isfinite(s).all()
    assert -256 * 12 < s.mean() < 0  # about 256·log(16384) nats for random weights
    assert predict(s, [3, 997]).item() in (3, 997)
    with pytest.raises(ValueError, match='null class'):
        sample_scores(clf, x, [1000], n=1)
