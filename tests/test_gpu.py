"GPU-only checks (skipped without CUDA; run on a GPU machine with `bash tools/gpu_run.sh test`)."
import pytest, torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')

def test_bf16_scores_track_fp32():
    "The bf16 autocast scorer gives the same log-likelihoods as fp32 to bf16 precision, on the shipped model."
    from arclf.cli import build_classifier
    from arclf.scorer import RandARClassifier
    clf = build_classifier('randar', device='cuda')
    ids = torch.randint(0, clf.model.cfg.vocab_size, (4, clf.n_tokens))
    g = lambda: torch.Generator().manual_seed(0)
    a = clf.sample_scores(ids, list(range(10)), 3, g())
    b = RandARClassifier(clf.model, autocast_dtype=torch.bfloat16).sample_scores(ids, list(range(10)), 3, g())
    torch.testing.assert_close(b, a, rtol=2e-2, atol=0.5)       # sums of 49 log-probs
    assert (a.mean(-1).argmax(-1) == b.mean(-1).argmax(-1)).float().mean() >= 0.75

def test_train_model_on_gpu_bf16_compile(data_root, tmp_path):
    "train_model on CUDA: bf16 switches on by itself, torch.compile works, the saved weights load on the CPU."
    from arclf.training import train_model
    from arclf.core import load_pretrained
    from arclf.diffusion import DiT
    m = train_model('dit', 'fashion_mnist', out=tmp_path/'d.pt', n_train=1024, bs=128, root=data_root, compile=True, log_every=0)
    assert m.meta['recipe']['bf16'] and m.meta['device'].startswith('cuda')
    assert all(torch.isfinite(torch.tensor(m.meta['loss_curve'])))
    assert load_pretrained(DiT, tmp_path/'d.pt').cfg.input_size == 28
