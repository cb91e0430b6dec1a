"""Integration tests of arclf.llamagen and arclf.maskgit: official-layout files load by name,
the AR classifier scores LlamaGen in raster order only, end to end with a VQ tokenizer."""

import json
from pathlib import Path
import pytest
import torch
from arclf.core import create_model, layout, random_state_dict
from arclf.classifiers import create_classifier
from arclf.scorer import RandARClassifier, evaluate
import arclf.llamagen  # noqa: F401 -- registers the LlamaGen presets
import arclf.maskgit  # noqa: F401 -- registers maskgit_vq

torch.set_num_threads(1)
LAYOUTS = Path(__file__).parent / 'layouts'
# tiny overrides of the official presets: the same code and key names, a file of kilobytes
TINY_GPT = dict(dim=32, n_layer=2, n_head=2, vocab_size=13, num_classes=5, grid=(3, 3),
                multiple_of=16)
TINY_VQ = dict(image_size=32, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=32,
               codebook_size=64, codebook_embed_dim=32)


def test_official_key_lists_are_the_presets_keys():
    "Full size on `meta` (no memory): the recorded keys, in order, with their shapes."
    for name, f in (('llamagen_gpt_l', 'llamagen_gpt_l_c2i_keys.json'),
                    ('maskgit_vq', 'maskgit_vq_keys.json')):
        official = json.loads((LAYOUTS / f).read_text())
        with torch.device('meta'):
            m = create_model(name)
        assert layout(m) == official and list(layout(m)) == list(official)


@pytest.mark.parametrize('wrapped', [True, False])
def test_llamagen_file_loads_by_name(tmp_path, wrapped):
    "A DDP-style file (weights under 'model', with optimizer and steps) or a plain (FSDP) one."
    with torch.device('meta'):
        lay = layout(create_model('llamagen_gpt_l', **TINY_GPT))
    sd = random_state_dict(lay, torch.Generator().manual_seed(0), dtype=torch.bfloat16)
    p = tmp_path / 'c2i_tiny.pt'
    torch.save({'model': sd, 'optimizer': {}, 'steps': 1} if wrapped else sd, p)
    m = create_model('llamagen_gpt_l', pretrained=p, **TINY_GPT)
    assert not m.training and m.cfg.order == 'raster'
    assert torch.equal(m.state_dict()['layers.1.feed_forward.w2.weight'],
                       sd['layers.1.feed_forward.w2.weight'].float())


def test_maskgit_bin_loads_and_foreign_files_fail(tmp_path):
    with torch.device('meta'):
        lay = layout(create_model('maskgit_vq', **TINY_VQ))
    sd = random_state_dict(lay, torch.Generator().manual_seed(0))
    torch.save(sd, tmp_path / 'maskgit.bin')  # a plain state dict, as the released file
    m = create_model('maskgit_vq', pretrained=tmp_path / 'maskgit.bin', **TINY_VQ)
    assert torch.equal(m.quantize.embedding.weight, sd['quantize.embedding.weight'])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert m.encode(x).shape == (2, 64) and m.decode(m.encode(x)).shape == x.shape
    bad = dict(sd)
    bad['quant_conv.weight'] = torch.zeros(1)  # a LlamaGen-style key
    torch.save(bad, tmp_path / 'bad.bin')
    with pytest.raises(ValueError, match=r'unexpected key\(s\): quant_conv\.weight'):
        create_model('maskgit_vq', pretrained=tmp_path / 'bad.bin', **TINY_VQ)


def test_create_classifier_scores_llamagen_end_to_end():
    "`llamagen_tiny` with the shipped `vq_fmnist_s` (256 codes, 7x7): raster order, all classes."
    torch.manual_seed(0)
    clf = create_classifier('llamagen_tiny', tokenizer='vq_fmnist_s', pretrained=False)
    assert isinstance(clf, RandARClassifier) and clf.raster
    with torch.no_grad():  # class dependence (the output layer starts at zero)
        for p in clf.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    res = evaluate(clf, (x, torch.tensor([0, 4, 9])), n=2, progress=False)
    s = res['scores']
    assert s.shape == (3, 10, 2) and torch.isfinite(s).all()
    assert torch.allclose(s[..., 0], s[..., 1])  # one order
    ids = clf.tokenizer.encode(x)
    want = torch.stack([clf.model.log_likelihood(ids, torch.full((3,), k)) for k in range(10)], 1)
    assert torch.allclose(s[..., 0], want.detach(), atol=1e-3)
    # prefix pruning scores the first L raster steps
    samples = clf.draw(ids[:1], 1, torch.Generator())
    part = clf.score(ids[:1], torch.arange(10)[None], samples, prefix=10)
    lp = clf.model.token_logprobs(ids[:1].expand(10, -1), torch.arange(10))[:, :10].sum(-1)
    assert torch.allclose(part[0, :, 0], lp.detach(), atol=1e-4)


def test_random_orders_are_refused():
    m = create_model('llamagen_tiny').eval()
    clf = RandARClassifier(m, create_model('vq_fmnist_s'), raster=False)
    with pytest.raises(ValueError, match='raster order only.*RandARClassifier\\(raster=True\\)'):
        clf.predict(torch.randint(0, 256, (1, 49)), n=2)


def test_saved_records_load_by_path(tmp_path):
    """A LlamaGen GPT and MaskGIT's VQ saved by the project's own `save_pretrained` load by path
    as what they are (MaskGIT's config has a VQ tokenizer's fields, its layout no quant_conv);
    the LlamaGen record's tokenizer makes its classifier."""
    from arclf.classifiers import load_model
    from arclf.core import save_pretrained
    from arclf.llamagen import LlamaGen
    from arclf.maskgit import MaskGIT
    from arclf.tokenizer import VQModel

    torch.manual_seed(0)
    for name, kw, cls in (('llamagen_gpt_l', TINY_GPT, LlamaGen), ('maskgit_vq', TINY_VQ, MaskGIT),
                          ('vq_fmnist_s', dict(ch=8, z_channels=8), VQModel)):
        m = create_model(name, **kw)
        save_pretrained(m, tmp_path / f'{name}.pt', preset=name)
        back = load_model(tmp_path / f'{name}.pt')
        assert type(back) is cls, (name, type(back))
        sd = m.state_dict()
        assert all(torch.equal(v, sd[k]) for k, v in back.state_dict().items())
    save_pretrained(create_model('llamagen_tiny'), tmp_path / 'lg.pt', family='llamagen',
                    preset='llamagen_tiny', tokenizer='vq_fmnist_s')
    clf = create_classifier(str(tmp_path / 'lg.pt'))
    assert isinstance(clf, RandARClassifier) and clf.raster and clf.tokenizer.vocab_size == 256
