"GPU-only checks (skipped without CUDA; run on a GPU machine with `bash tools/gpu_run.sh test`)."

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def test_bf16_scores_track_fp32():
    """The bf16 autocast scorer gives the same log-likelihoods as fp32 to bf16 precision, on the
    shipped model."""
    from arclf.classifiers import create_classifier
    from arclf.scorer import RandARClassifier, sample_scores

    clf = create_classifier('randar', device='cuda')
    assert clf.device.type == 'cuda'
    ids = torch.randint(
        0, clf.model.cfg.vocab_size, (4, clf.n_tokens), generator=torch.Generator().manual_seed(0)
    )
    a = sample_scores(clf, ids, list(range(10)), 3, seed=0)
    bf16 = RandARClassifier(clf.model, autocast_dtype=torch.bfloat16)
    b = sample_scores(bf16, ids, list(range(10)), 3, seed=0)
    assert a.shape == b.shape == (4, 10, 3) and a.dtype == b.dtype == torch.float32
    torch.testing.assert_close(b, a, rtol=2e-2, atol=0.5)  # sums of 49 log-probs
    assert not torch.equal(a, b), 'autocast must actually run in bf16'
    assert (a.mean(-1).argmax(-1) == b.mean(-1).argmax(-1)).float().mean() >= 0.75


def test_train_model_on_gpu_bf16_compile(data_root, tmp_path):
    """train_model on CUDA: bf16 switches on by itself, torch.compile works, the saved weights load
    on the CPU."""
    from arclf.training import train_model
    from arclf.core import create_model

    m = train_model(
        'dit',
        'fashion_mnist',
        out=tmp_path / 'd.pt',
        n_train=1024,
        bs=128,
        root=data_root,
        compile=True,
        log_every=0,
    )
    assert m.meta['recipe']['bf16'] and m.meta['recipe']['device'].startswith('cuda')
    rec = m.meta['record']
    assert rec['steps'] == 8 and len(rec['loss_curve']) == 8
    assert all(torch.isfinite(torch.tensor(rec['loss_curve'])))
    back = create_model('dit_fmnist', pretrained=tmp_path / 'd.pt')
    assert back.cfg.input_size == 28 and next(back.parameters()).device.type == 'cpu'


def test_scorer_bench_on_cuda(tmp_path):
    """The scorer benchmark on CUDA: bf16 by default, an auto chunk sized to the GPU, the share of
    the bf16 peak on a known GPU (the full shapes run in `bash tools/gpu_run.sh bench`)."""
    import json
    from arclf.bench import scorer_benchmarks, bf16_peak

    out = tmp_path / 'bench_cuda.json'
    scorer_benchmarks(out, models=('randar_l', 'dit_xl2'), shape='tiny', device='cuda', reps=1)
    rec = json.loads(out.read_text())
    assert rec['bf16_peak'] == bf16_peak(torch.cuda.get_device_name())
    for r in rec['rows']:
        assert r['dtype'] == 'bf16' and r['device'].startswith('cuda') and r['chunk_used'] >= 2
        assert r['sequences_per_s'] > 0 and r['shape'] == 'tiny'
        assert (r['peak_fraction'] is None) == (rec['bf16_peak'] is None)
    assert rec['speed_ratio']['dit_over_randar'] > 0
