"The order-marginalized classifier: shared orders, determinism, chunking, agreement with the model, full-size shapes."
import json
from pathlib import Path
import pytest, torch
from arclf.randar import randar_fmnist, randar_l, RandAR
from arclf.scorer import RandARClassifier, evaluate, aggregate, predict, draw_orders, prune_scores, image_generator
from arclf.core import random_state_dict, load_strict, layout

torch.set_num_threads(2)

@pytest.fixture(scope='module')
def small():
    torch.manual_seed(0)
    m = randar_fmnist(vocab_size=64, dim=64, n_layer=2, n_head=2).eval()
    with torch.no_grad():                      # a model with real class dependence (the output layer starts at zero)
        for p in m.parameters(): p.add_(torch.randn_like(p) * 0.05)
    x = torch.randint(0, 64, (5, 49), generator=torch.Generator().manual_seed(1))
    return m, x

def test_permuting_classes_permutes_scores(small):
    m, x = small; clf = RandARClassifier(m, chunk=7)
    a = clf.sample_scores(x, [0, 1, 2, 3], n=3, generator=torch.Generator().manual_seed(0))
    b = clf.sample_scores(x, [2, 0, 3, 1], n=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(b, a[:, [2, 0, 3, 1]])
    assert a.std(1).mean() > 1e-3, 'classes must actually differ for this test to mean anything'

def test_orders_shared_across_classes_and_seeded(small):
    m, x = small; clf = RandARClassifier(m)
    s = clf.draw(x, 4, torch.Generator().manual_seed(3))['order']
    assert s.shape == (5, 4, 49) and all(sorted(o.tolist()) == list(range(49)) for o in s.reshape(-1, 49))
    torch.testing.assert_close(s, clf.draw(x, 4, torch.Generator().manual_seed(3))['order'])
    assert not torch.equal(s, clf.draw(x, 4, torch.Generator().manual_seed(4))['order'])
    # the same order is used for every class: a class-independent model would give identical scores across classes
    sc = clf.score(x, torch.tensor([[0, 0]] * 5), {'order': s})
    torch.testing.assert_close(sc[:, 0], sc[:, 1])

def test_chunk_and_batch_sizes_do_not_change_results(small):
    m, x = small; y = torch.tensor([0, 1, 2, 0, 1])
    r1 = evaluate(RandARClassifier(m, chunk=1), (x, y), n=3, classes=[0, 1, 2], bs=1, progress=False)
    r2 = evaluate(RandARClassifier(m, chunk=1000), (x, y), n=3, classes=[0, 1, 2], bs=5, progress=False)
    torch.testing.assert_close(r1['scores'], r2['scores'], rtol=1e-5, atol=1e-4)

def test_scores_equal_teacher_forced_likelihood(small):
    m, x = small; clf = RandARClassifier(m)
    order = draw_orders(5, 2, 49, torch.Generator().manual_seed(0))
    sc = clf.score(x, torch.tensor([[3, 7]] * 5), {'order': order})
    for b in range(5):
        for k in range(2):
            for j, c in enumerate((3, 7)):
                logits = m(x[b:b + 1], torch.tensor([c]), order[b, k][None])
                ref = logits.log_softmax(-1).gather(-1, x[b:b + 1].gather(1, order[b, k][None])[..., None]).sum()
                torch.testing.assert_close(sc[b, j, k], ref, rtol=1e-5, atol=1e-4)

def test_raster_mode_uses_identity_order(small):
    m, x = small; clf = RandARClassifier(m, raster=True)
    o = clf.draw(x, 2, torch.Generator().manual_seed(0))['order']
    assert torch.equal(o, torch.arange(49).expand(5, 2, 49))

def test_resumable_evaluation(small, tmp_path):
    m, x = small; y = torch.tensor([0, 1, 2, 0, 1]); clf = RandARClassifier(m)
    full = evaluate(clf, (x, y), n=2, classes=[0, 1, 2], bs=1, progress=False)
    # interrupt after 2 saved batches by failing on the third
    class Boom(RandARClassifier):
        calls = 0
        def score(self, *a, **k):
            Boom.calls += 1
            if Boom.calls == 3: raise KeyboardInterrupt
            return super().score(*a, **k)
    with pytest.raises(KeyboardInterrupt):
        evaluate(Boom(m), (x, y), n=2, classes=[0, 1, 2], bs=1, out=tmp_path/'r.pt', save_every=1, progress=False)
    part = torch.load(Path(f'{tmp_path}/r.pt.part'), weights_only=True)
    assert part['done'].sum() == 2
    Boom.calls = -100
    res = evaluate(Boom(m), (x, y), n=2, classes=[0, 1, 2], bs=1, out=tmp_path/'r.pt', save_every=1, progress=False)
    assert Boom.calls == -100 + 3, 'only the 3 missing images are scored again'
    torch.testing.assert_close(res['scores'], full['scores'])

def test_pruning_keeps_survivor_scores(small):
    m, x = small
    full = evaluate(RandARClassifier(m), (x, torch.zeros(5, dtype=torch.long)), n=4, classes=[0, 1, 2, 3], progress=False)
    pr = prune_scores(RandARClassifier(m), x, [0, 1, 2, 3], [(2, 2), (4, 1)], generator_fn=lambda i: image_generator(0, i))
    lb = aggregate(full['scores'])
    winners = pr['scores'].argmax(1)
    torch.testing.assert_close(pr['scores'].gather(1, winners[:, None])[:, 0], lb.gather(1, winners[:, None])[:, 0])
    assert (pr['forwards'] == 4 * 2 + 2 * 2).all()

def test_bad_inputs(small):
    m, x = small; clf = RandARClassifier(m)
    with pytest.raises(ValueError, match='49'): clf.sample_scores(x[:, :10], [0], 1)
    with pytest.raises(ValueError, match='vocabular'): clf.sample_scores(x + 100, [0], 1)
    with pytest.raises(ValueError, match='no tokenizer'): clf.sample_scores(torch.rand(2, 1, 28, 28), [0], 1)
    with pytest.raises(ValueError, match='NaN'): aggregate(torch.tensor([[[float('nan')]]]))

def test_randar_l_scores_a_256_token_image_with_a_class_subset():
    "Full-size shapes end to end: a RandAR-L with random weights (official layout) scores 1 image, 2 of 1000 classes."
    layout_file = Path(__file__).resolve().parents[2]/'shared'/'checkpoint-layouts'/'randar_l_keys.json'
    with torch.device('meta'): m = randar_l()
    m = m.to_empty(device='cpu')
    if layout_file.exists(): assert layout(m) == json.loads(layout_file.read_text())
    for p in m.parameters(): torch.nn.init.normal_(p, std=0.02)
    clf = RandARClassifier(m.eval(), chunk=2)
    x = torch.randint(0, 16384, (1, 256), generator=torch.Generator().manual_seed(0))
    s = clf.sample_scores(x, [3, 997], n=1, generator=torch.Generator().manual_seed(0))
    assert s.shape == (1, 2, 1) and torch.isfinite(s).all()
    assert -256 * 12 < s.mean() < 0                             # about 256·log(16384) nats for random weights
    assert predict(s, [3, 997]).item() in (3, 997)
