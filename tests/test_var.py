"""Integration tests of arclf.var and arclf.avarc: VAR's official layouts load strictly by name,
the A-VARC classifier scores through the one scorer (likelihood smoothing, class pruning with
its forward count, token-wise mutual information)."""

import json
from pathlib import Path
import pytest
import torch
from arclf.core import create_model, layout, load_strict, model_spec, random_state_dict
from arclf.classifiers import create_classifier
from arclf.scorer import evaluate, image_generator, sample_scores
from arclf.var import VAR, VARVAE, scale_ends
from arclf.avarc import AVARClassifier, avarc_prune, split_scales, token_mi

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings('ignore:.*meta parameter')
LAYOUTS = Path(__file__).parent / 'layouts'  # copies of ../shared/checkpoint-layouts
OFFICIAL = {'var_vae': 'vae_var_ch160v4096z32_keys.json', 'var_d16': 'var_d16_keys.json',
            'var_d30': 'var_d30_keys.json'}
# tiny overrides of the official presets: the same code and key names, a file of kilobytes; the
# VAE keeps VAR's ten scales (32 px images, one stride-2 step to the 16x16 latent)
TINY_VAE = dict(image_size=32, ch=32, ch_mult=(1, 2), num_res_blocks=1, vocab_size=64,
                z_channels=8)
TINY_VAR = dict(vocab_size=64, z_channels=8, depth=1, dim=32, n_head=2, drop_path_rate=0.0)
ENDS = [1, 5, 14, 30, 55, 91, 155, 255, 424, 680]


# The parity fixture (tools/make_var_parity.py runs FoundationVision/VAR's own code on these sizes,
# its weights made by `fill` from each parameter's name): 64 px, scales 1..4 (30 tokens), 512 codes
PARITY_VAE = dict(vocab_size=512, z_channels=16, ch=32, patch_nums=(1, 2, 3, 4), image_size=64)
PARITY_VAR = dict(num_classes=10, depth=2, dim=128, n_head=2)
PARITY = Path(__file__).parent / 'fixtures' / 'var_parity.pt'


def fill(m: torch.nn.Module):
    """Every parameter from a generator seeded by its name (order-free): norm weights near 1,
    code embeddings of scale 0.5, the rest of scale 0.05 (gates away from 0: every block counts)."""
    import zlib

    with torch.no_grad():
        for name, p in m.named_parameters():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            r = torch.randn(p.shape, generator=g)
            if 'norm' in name and name.endswith('weight'):
                p.copy_(1 + 0.05 * r)
            elif 'embedding' in name:
                p.copy_(0.5 * r)
            else:
                p.copy_(0.05 * r)


def official(name: str) -> dict:
    return json.loads((LAYOUTS / OFFICIAL[name]).read_text())


def tiny(num_classes: int = 5, seed: int = 0):
    "A tiny (VAE, VAR) of the official presets' code with random weights, the class enlarged."
    torch.manual_seed(seed)
    vae = create_model('var_vae', **TINY_VAE).eval()
    with torch.no_grad():
        vae.quantize.embedding.weight.normal_(0, 0.3)  # codes spread like the latents
    m = create_model('var_d16', num_classes=num_classes, **TINY_VAR)
    sd = random_state_dict(layout(m), torch.Generator().manual_seed(seed))
    big = {k: 25.0 if 'ada_lin' in k else 50.0 if k == 'head.weight' else 1.0 for k in sd}
    load_strict(m, {k: v * big[k] for k, v in sd.items()})
    return vae, m.eval()


@pytest.fixture(scope='module')
def clf():
    vae, m = tiny()
    return AVARClassifier(m, vae)


@pytest.fixture(scope='module')
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


# -- layouts and files -------------------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_official_key_lists_are_the_presets_keys(name):
    "Full size on `meta` (no memory): the recorded keys, in order, with their shapes."
    with torch.device('meta'):
        m = create_model(name)
    assert list(layout(m).items()) == list(official(name).items())
    spec = model_spec(name)
    assert spec.url == f'https://huggingface.co/FoundationVision/var/resolve/main/{spec.weights}'


def _scaled_layout(depth: int) -> dict:
    """VAR-d`depth`'s layout from the recorded d16 and d30 lists: a shape entry that differs
    between them is proportional to the depth, the others are constants; blocks repeat."""
    a, b = official('var_d16'), official('var_d30')
    assert [k for k in a if not k.startswith('blocks.')] == [
        k for k in b if not k.startswith('blocks.')]

    def shape(k):
        s16, s30 = a[k], b[k]
        out = []
        for x, y in zip(s16, s30):
            assert x == y or x * 30 == y * 16, (k, s16, s30)  # constant or linear in the depth
            out.append(x if x == y else x * depth // 16)
        return out

    head = [k for k in a if not k.startswith('blocks.')]
    block0 = [k for k in a if k.startswith('blocks.0.')]
    lay = {k: shape(k) for k in head[:8]}  # embeddings and buffers come before the blocks
    for i in range(depth):
        lay.update({k.replace('blocks.0.', f'blocks.{i}.', 1): shape(k) for k in block0})
    lay.update({k: shape(k) for k in head[8:]})
    return lay


def test_d20_and_d24_have_the_checked_layouts_at_their_depth():
    "No key list was recorded for VAR-d20/d24: theirs follows from d16's and d30's."
    assert _scaled_layout(16) == official('var_d16') and _scaled_layout(30) == official('var_d30')
    for name, depth, params in (('var_d20', 20, 600e6), ('var_d24', 24, 1.0e9)):
        with torch.device('meta'):
            m = create_model(name)
        assert list(layout(m).items()) == list(_scaled_layout(depth).items())
        assert abs(sum(p.numel() for p in m.parameters()) / params - 1) < 0.05  # VAR's README


def test_var_file_loads_by_name(tmp_path):
    "A plain state dict (as the released .pth) of var_d16's layout at a tiny size, by name."
    with torch.device('meta'):
        lay = layout(create_model('var_d16', **TINY_VAR))
    sd = random_state_dict(lay, torch.Generator().manual_seed(0), dtype=torch.bfloat16)
    p = tmp_path / 'var_tiny.pth'
    torch.save(sd, p)
    m = create_model('var_d16', pretrained=p, **TINY_VAR)
    assert isinstance(m, VAR) and not m.training
    assert torch.equal(m.state_dict()['blocks.0.ffn.fc2.weight'],
                       sd['blocks.0.ffn.fc2.weight'].float())
    # the structural buffers are rebuilt, not taken from the (random) file
    assert m.attn_bias_for_masking[0, 0, 0, 1] == float('-inf') and m.lvl_1L[0, -1] == 9
    assert m.blocks[0].attn.zero_k_bias.abs().sum() == 0
    with pytest.raises(ValueError, match=r'missing key\(s\): blocks\.1\.'):
        create_model('var_d16', pretrained=p, **{**TINY_VAR, 'depth': 2})  # a foreign layout
    with pytest.raises(ValueError, match='missing key'):  # the VAE file is not a VAR's
        torch.save(random_state_dict(layout(create_model('var_vae', **TINY_VAE))),
                   tmp_path / 'vae.pth')
        create_model('var_d16', pretrained=tmp_path / 'vae.pth', **TINY_VAR)


def test_vae_file_loads_by_name(tmp_path, images):
    with torch.device('meta'):
        lay = layout(create_model('var_vae', **TINY_VAE))
    sd = random_state_dict(lay, torch.Generator().manual_seed(0))
    torch.save(sd, tmp_path / 'vae_tiny.pth')
    vae = create_model('var_vae', pretrained=tmp_path / 'vae_tiny.pth', **TINY_VAE)
    assert isinstance(vae, VARVAE)
    assert torch.equal(vae.quantize.embedding.weight, sd['quantize.embedding.weight'])
    ids = vae.encode(images)
    assert [t.shape[1] for t in ids] == [p * p for p in vae.patch_nums]
    assert vae.decode(ids).shape == images.shape


# -- the model's log-likelihood ----------------------------------------------------------------


def test_token_logprobs_sum_and_first_scales(clf, images):
    vae, m = clf.vae, clf.model
    ids = vae.encode(images)
    tok, xin, y = torch.cat(ids, 1), vae.var_input(ids), torch.tensor([0, 4, 5])  # 5: null
    with torch.no_grad():
        lp = m.token_logprobs(tok, y, xin)
        assert lp.shape == (3, 680) and scale_ends(m.cfg.patch_nums) == ENDS
        assert torch.allclose(m.log_likelihood(tok, y, xin), lp.sum(-1), atol=1e-3)
        for s in (1, 6, 9):
            part = m.token_logprobs(tok, y, xin, scales=s)
            assert torch.allclose(part, lp[:, : ENDS[s - 1]], atol=1e-5)
        # the teacher-forcing input of the first k maps is a prefix too
        assert torch.allclose(vae.var_input(ids[:6]), xin[:, :90], atol=1e-6)
        with pytest.raises(ValueError, match='do not end a scale'):
            m.token_logprobs(tok[:, :90], y, xin[:, :89])


# -- the classifier ----------------------------------------------------------------------------


def test_smoothing_semantics(clf, images):
    vae, m = clf.vae, clf.model
    s = sample_scores(clf, images, range(5), n=3)  # [B, M, S]
    ids = vae.encode(images)
    tok, xin = torch.cat(ids, 1), vae.var_input(ids)
    with torch.no_grad():
        plain = torch.stack([m.log_likelihood(tok, torch.full((3,), c), xin) for c in range(5)], 1)
    # S = 1 is the plain likelihood; sample 0 is always the image itself
    assert torch.allclose(sample_scores(clf, images, range(5), n=1)[..., 0], plain, atol=1e-2)
    assert torch.allclose(s[..., 0], plain, atol=1e-2)
    # neighbours f + sigma eps: other token maps, other scores
    assert (s[..., 1:] - s[..., :1]).abs().amin() > 1e-3
    # shared by all classes: any subset of classes, in any order, sees the same samples
    assert torch.allclose(sample_scores(clf, images, [3, 0], n=3), s[:, [3, 0]], atol=1e-3)
    # seeded per image: alone or in a batch, the same draws; another seed, other draws
    assert torch.allclose(sample_scores(clf, images[1:2], range(5), n=3, indices=[1]), s[1:2],
                          atol=1e-3)
    other = sample_scores(clf, images, range(5), n=3, seed=1)
    assert torch.allclose(other[..., 0], s[..., 0], atol=1e-3)
    assert (other[..., 1:] - s[..., 1:]).abs().amax() > 1e-3
    eps = clf.draw(clf.prepare(images[:1]), 3, image_generator(0, 0))['noise']
    assert eps.shape == (1, 3, 8, 16, 16) and eps[0, 0].abs().sum() == 0
    # the noise acts on the continuous map, scaled by sigma: sigma 0 makes every sample the image
    clf0 = AVARClassifier(m, vae, sigma=0.0)
    s0 = sample_scores(clf0, images, range(5), n=3)
    assert torch.allclose(s0, s0[..., :1].expand_as(s0), atol=1e-4)
    # evaluate takes the same path; A-VARC's score is the mean (the lower_bound rule)
    res = evaluate(clf, (images, torch.tensor([0, 1, 2])), n=3, bs=2, progress=False)
    assert torch.allclose(res['scores'], s, atol=1e-3) and res['forwards_per_image'] == 15


def test_pruning_readme_example_runs_119_forwards():
    "100 classes; keep 10, 3, 1; samples 1, 1, 3; scales 6, 10, 10 (A-VARC's README)."
    vae, m = tiny(num_classes=100)
    clf = AVARClassifier(m, vae)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    stages = [(10, 1, 6), (3, 1, 10), (1, 3, 10)]
    before = clf._sequences
    r = avarc_prune(clf, x, range(100), stages)
    assert r['forwards'].tolist() == [119, 119]  # 100 + 10 + 3 x 3
    assert clf._sequences - before == 2 * 119  # what was run, not only what was counted
    assert torch.allclose(r['full_equivalents'], torch.full((2,), 100 * 91 / 680 + 19.0))
    # each stage re-scores its survivors from scratch; the last keeps the best of the mean over
    # its three samples (the image and two neighbours)
    s0 = sample_scores(clf, x, range(100), n=1, scales=6)[..., 0]
    top10 = s0.topk(10, -1).indices
    for i in range(2):
        s1 = sample_scores(clf, x[i : i + 1], top10[i], n=1, indices=[i])[0, :, 0]
        top3 = top10[i][s1.topk(3).indices]
        s2 = sample_scores(clf, x[i : i + 1], top3, n=3, indices=[i])[0].mean(-1)
        assert r['pred'][i] == top3[s2.argmax()]
        assert torch.isclose(r['scores'][i, r['pred'][i]], s2.max(), atol=1e-3)
        assert torch.isfinite(r['scores'][i]).sum() == 1
    with pytest.raises(ValueError, match='bad A-VARC stages'):
        avarc_prune(clf, x, range(100), [(10, 1, 6), (30, 1, 10), (1, 3, 10)])  # keep grows


def test_token_mi_maps(clf, images):
    mi = token_mi(clf, images, [1, 3])
    assert mi['mi'].shape == (3, 2, 680)
    assert [t.shape[-2:] for t in mi['maps']] == [(p, p) for p in clf.patch_nums]
    assert torch.equal(mi['maps'][4].flatten(-2), mi['mi'][..., 30:55])
    assert torch.allclose(mi['mi'], mi['cond'] - mi['null'][:, None])
    # a toy model whose every class embedding is the null one: no information anywhere
    vae, m = tiny()
    with torch.no_grad():
        m.class_emb.weight[:] = m.class_emb.weight[m.null_class]
    toy = token_mi(AVARClassifier(m, vae), images[:1], [0, 2, 4])
    assert toy['mi'].abs().max() < 1e-4
    # and one where only class 2 differs: information only for it
    with torch.no_grad():
        m.class_emb.weight[2] += 1.0
    toy = token_mi(AVARClassifier(m, vae), images[:1], [0, 2])['mi'][0]
    assert toy[0].abs().max() < 1e-4 and toy[1].abs().max() > 1e-3
    assert [t.shape[-1] for t in split_scales(mi['mi'][..., :55], clf.patch_nums)] == [1, 2, 3,
                                                                                        4, 5]


def test_create_classifier_by_name():
    clf = create_classifier('var_fmnist', tokenizer='var_vae_fmnist', pretrained=False)
    assert isinstance(clf, AVARClassifier) and clf.n_tokens == 88 and clf.sigma == 0.1
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 2 - 1
    res = evaluate(clf, (x, torch.tensor([1, 8])), n=2, progress=False)
    assert res['scores'].shape == (2, 10, 2) and torch.isfinite(res['scores']).all()
    with pytest.raises(ValueError, match='not options of the A-VARC'):
        create_classifier('var_fmnist', tokenizer='var_vae_fmnist', pretrained=False, raster=True)
    with pytest.raises(ValueError, match='records no VAE'):
        create_classifier('var_fmnist', pretrained=False)
    with pytest.raises(ValueError, match='pass the VAE the model was trained on'):
        create_classifier('var_fmnist', tokenizer=create_model('var_vae', **TINY_VAE),
                          pretrained=False)


# -- training with the one engine, and A-VARC on the command line ------------------------------

# a one-block VAR on 16 images: the VAE two steps, VAR four (both stages in seconds)
TRAIN = ['--n-train', '16', '--bs', '8', '--epochs', '2', '--tokenizer-epochs', '1',
         '--device', 'cpu', '--log-every', '0', '--threads', '1', '--cfg', 'depth=1', '--cfg',
         'dim=32', '--cfg', 'n_head=2']


@pytest.fixture(scope='module')
def trained(data_root, tmp_path_factory):
    "`arclf train var`: the VAE trained first (stage 1), saved beside the VAR (stage 2)."
    from test_cli import arclf_cmd

    d = tmp_path_factory.mktemp('var')
    p = arclf_cmd('train', 'var', *TRAIN, '--root', str(data_root), '--out', str(d / 'var.pt'))
    vae = d / 'var_vae_fmnist.pt'
    assert f'VAE: var_vae_fmnist, trained first; weights go to {vae}' in p.stdout
    return d


def test_train_var_records_its_vae(trained):
    from arclf.classifiers import load_model
    from arclf.core import model_meta
    from arclf.data import file_digest

    meta, vae = model_meta(trained / 'var.pt'), trained / 'var_vae_fmnist.pt'
    assert (meta['family'], meta['preset'], meta['record']['steps']) == ('var', 'var_fmnist', 4)
    assert meta['tokenizer'] == str(vae.resolve())
    assert meta['recipe']['tokenizer_sha256'] == file_digest(vae)[:12]
    vmeta = model_meta(vae)
    assert (vmeta['family'], vmeta['preset'], vmeta['record']['steps']) == ('var_vae',
                                                                           'var_vae_fmnist', 2)
    # both records load by path as what they hold
    m, v = load_model(trained / 'var.pt'), load_model(vae)
    assert isinstance(m, VAR) and isinstance(v, VARVAE) and m.cfg.depth == 1 and m.n_tokens == 88


def test_train_var_resumes_exactly(trained, data_root, tmp_path):
    """Killed in stage 2 after 3 of its 4 steps, resumed through `arclf train var --ckpt`: the same
    weights as the uninterrupted run (the VAE beside --out is the same file, reused)."""
    from test_cli import arclf_cmd
    from arclf.training import train_model

    from conftest import Killed, kill_after

    out, ckpt = trained / 'b.pt', tmp_path / 'b.ckpt'
    kw = dict(n_train=16, bs=8, epochs=2, tokenizer_epochs=1, device='cpu', log_every=0,
              depth=1, dim=32, n_head=2, root=data_root)
    with pytest.raises(Killed):
        train_model('var', out=out, ckpt=ckpt, ckpt_every=1, extra_cbs=[kill_after(3)], **kw)
    assert not out.exists() and ckpt.exists()
    arclf_cmd('train', 'var', *TRAIN, '--root', str(data_root), '--out', str(out), '--ckpt',
              str(ckpt))
    a, b = (torch.load(trained / f, weights_only=True) for f in ('var.pt', 'b.pt'))
    assert a['model'].keys() == b['model'].keys()
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert a['meta']['record']['loss_curve'] == b['meta']['record']['loss_curve']


def test_eval_a_trained_var_with_avarc(trained, data_root, tmp_path):
    "`arclf eval --model FILE`: A-VARC with its recorded VAE; its stages; its options only."
    from test_cli import arclf_cmd
    from arclf.core import save_pretrained

    common = ['--model', str(trained / 'var.pt'), '--n-per-class', '1', '--root', str(data_root)]
    arclf_cmd('eval', *common, '--n', '2', '--sigma', '0.2', '--out', str(tmp_path / 'r.json'))
    r = json.loads((tmp_path / 'r.json').read_text())
    assert (r['classifier'], r['images'], r['n'], r['forwards_per_image']) == (
        'AVARClassifier', 10, 2, 20)
    arclf_cmd('eval', *common, '--avarc-stages', '3:1:3,1:2:5', '--out', str(tmp_path / 's.json'))
    s = json.loads((tmp_path / 's.json').read_text())
    assert s['avarc_stages'] == [[3, 1, 3], [1, 2, 5]] and s['sigma'] == 0.1
    assert s['forwards_per_image'] == 10 * 1 + 3 * 2  # VAR forwards, one per class and sample
    assert abs(s['full_equivalents_per_image'] - (10 * 14 / 88 + 3 * 2)) < 1e-9
    assert 0 <= s['acc'] <= 1 and 'eval' in s['run_info']['command']
    # a bad stage is named with the rule; a malformed one with the format
    p = arclf_cmd('eval', *common, '--avarc-stages', '3:1:3,5:1:5', code=2)
    assert 'stage 2 (5, 1, 5) keeps 5 classes, more than the 3' in p.stderr
    assert 'non-increasing from at most 10 down to 1' in p.stderr
    p = arclf_cmd('eval', *common, '--avarc-stages', '3:1:3,1:2', code=2)
    assert "stage 2 ('1:2') is not keep:samples:scales" in p.stderr
    # A-VARC's options on another family, another classifier's options on VAR
    p = arclf_cmd('eval', '--clf', 'randar', '--sigma', '0.1', code=2)
    assert '--sigma apply to A-VARC (VAR models) only' in p.stderr
    p = arclf_cmd('eval', *common, '--raster', code=2)
    assert 'raster: not options of the A-VARC classifier' in p.stderr
    # a VAE other than the one it was trained on (its sha256 is recorded) is refused
    vae = create_model('var_vae_fmnist')
    save_pretrained(vae, tmp_path / 'other.pt', family='var_vae')
    p = arclf_cmd('eval', *common, '--tokenizer', str(tmp_path / 'other.pt'), code=2)
    assert 'not the one the model was trained on' in p.stderr


# -- review fixes: candidates, scale counts, the VAE's sha256 by name ----------------------------


def test_avarc_evaluate_counts_the_datasets_classes(images):
    "A 5-class VAR on a 3-class dataset: the stages are checked, and cost, on the 3 scored."
    from arclf.avarc import avarc_evaluate
    from arclf.data import ImageSet

    vae, m = tiny(num_classes=5)
    clf = AVARClassifier(m, vae)
    x = ((images[:2] + 1) * 127.5).round().to(torch.uint8)
    data = ImageSet(x, torch.tensor([0, 2]), ['a', 'b', 'c'])
    r = avarc_evaluate(clf, data, [(2, 1, 3), (1, 2, 10)], progress=False)
    assert set(r['pred'].tolist()) <= {0, 1, 2}
    assert abs(r['full_equivalents_per_image'] - (3 * 14 / 680 + 2 * 2)) < 1e-9
    with pytest.raises(ValueError, match='keeps 4 classes, more than the 3 candidates'):
        avarc_evaluate(clf, data, [(4, 1, 3), (1, 1, 10)], progress=False)


def test_scales_out_of_range_are_named(clf):
    for bad in (0, -1, 11):
        with pytest.raises(ValueError, match=rf'scales={bad}: this VAR has 10 scales, pass '
                           r'scales in \[1, 10\]'):
            clf.n_scales(scales=bad)
    assert clf.n_scales(scales=10) == clf.n_scales() == 10


def test_registered_vae_is_checked_against_the_record(tmp_path, monkeypatch):
    "A VAE given by name is resolved to its file and checked, as a path is."
    import arclf.avarc as avarc
    from arclf.data import file_digest

    f = tmp_path / 'var_vae_fmnist.pt'
    f.write_bytes(b'another VAE')
    monkeypatch.setattr(avarc, 'weights_path', lambda name: f)
    _, m = tiny()
    m.meta = {'recipe': {'tokenizer_sha256': 'f' * 12}}
    with pytest.raises(ValueError, match='not the one the model was trained on'):
        avarc.create_avarc(m, 'var_vae_fmnist', pretrained=True)
    m.meta['recipe']['tokenizer_sha256'] = file_digest(f)[:12]
    avarc._check_vae_file(m, 'var_vae_fmnist', pretrained=True)  # the recorded file passes
    avarc._check_vae_file(m, 'var_vae_fmnist', pretrained=False)  # random weights: no file


def test_equal_to_the_official_code():
    """On the weights `fill` makes, arclf's VAE and VAR give what FoundationVision/VAR's own code
    gave (the fixture): the same token maps (also of an A-VARC neighbour f + 0.1·eps), the
    teacher-forcing input, the decoded image and the logits to float32 rounding."""
    from arclf.var import VARConfig, VARVAEConfig

    ref = torch.load(PARITY, weights_only=True)
    assert (ref['vae'], ref['var']) == (PARITY_VAE, PARITY_VAR)
    vae = VARVAE(VARVAEConfig(**{**PARITY_VAE, 'patch_nums': PARITY_VAE['patch_nums']})).eval()
    var = VAR(VARConfig(**PARITY_VAR, vocab_size=PARITY_VAE['vocab_size'],
                        z_channels=PARITY_VAE['z_channels'], patch_nums=PARITY_VAE['patch_nums'],
                        cond_drop_rate=0.0, drop_path_rate=0.0)).eval()
    fill(vae)
    fill(var)
    with torch.no_grad():
        f = vae.encode_continuous(ref['x'])
        ids = vae.tokenize(ref['f'])  # the quantizer alone, on the official f
        nb = vae.tokenize(ref['f'] + ref['eps'])
        x_in = vae.var_input(ids)
        img = vae.decode(ids)
        logits = var(ref['x_in'], ref['labels'])
        lp = var.token_logprobs(ref['ids'], ref['labels'], ref['x_in'])
    torch.testing.assert_close(f, ref['f'], rtol=0, atol=1e-5)
    assert torch.equal(torch.cat(ids, 1), ref['ids']) and len(ref['ids'].unique()) > 20
    assert torch.equal(torch.cat(vae.tokenize(f), 1), ref['ids'])  # and on arclf's own f
    assert torch.equal(torch.cat(nb, 1), ref['neighbour'])
    assert not torch.equal(ref['neighbour'], ref['ids'])  # the noise moved some codes
    torch.testing.assert_close(x_in, ref['x_in'], rtol=0, atol=1e-5)
    torch.testing.assert_close(img, ref['image'], rtol=0, atol=1e-4)
    torch.testing.assert_close(logits, ref['logits'], rtol=0, atol=1e-5)
    want = ref['logits'].log_softmax(-1).gather(-1, ref['ids'][..., None])[..., 0]
    torch.testing.assert_close(lp, want, rtol=0, atol=1e-5)
