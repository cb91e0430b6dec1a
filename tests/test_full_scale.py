"""The paper's protocol at full scale, end to end on this CPU: official-layout checkpoint files of
random weights (VQ-16, RandAR-L, the SD-VAE), an ImageNet-layout folder of generated JPEGs, and
`arclf eval` producing a Table 2 row. Full-size models are slow on a CPU (RandAR-L: about 10 s per
513-token sequence on 2 cores), so each run scores only a few sequences."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from arclf.core import create_model, layout, random_state_dict
from arclf.classifiers import create_classifier
from arclf.data import imagenet_variant
from arclf.diffusion import DiT_XL_2, load_sd_vae, sd_vae_layout
from arclf.experiments import run_eval
from arclf.scorer import RandomCropTTA, evaluate, sample_scores
from test_cli import arclf_cmd

WNIDS = [f'n{i:08d}' for i in range(1000)]  # sorted, like the real ones: id i is WNIDS[i]


def _jpegs(folder, wnids, per_class, rng, size=(300, 260)):
    for w in wnids:
        (folder / w).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            a = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
            Image.fromarray(a).save(folder / w / f'ILSVRC2012_val_{j:08d}.JPEG', quality=90)


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    "val/: 1000 wnid folders, images in 3 of them; r/: an R/A-style subset (2 of the 1000 classes)."
    d = tmp_path_factory.mktemp('imagenet')
    rng = np.random.default_rng(0)
    for w in WNIDS:
        (d / 'val' / w).mkdir(parents=True)
    _jpegs(d / 'val', [WNIDS[0], WNIDS[1], WNIDS[2]], 3, rng)
    _jpegs(d / 'r', [WNIDS[5], WNIDS[7]], 1, rng, size=(400, 300))
    return d


def _official(name, **kw):
    "A random state dict in the layout of the registered official model `name`."
    with torch.device('meta'):
        lay = layout(create_model(name, **kw))
    return random_state_dict(lay, torch.Generator().manual_seed(0))


@pytest.fixture(scope='module')
def vq_file(tmp_path_factory):
    p = tmp_path_factory.mktemp('weights') / 'vq_ds16_c2i.pt'
    torch.save({'model': _official('vq16')}, p)  # LlamaGen keeps the weights under 'model'
    return p


def test_imagenet_folders(imagenet):
    val = imagenet_variant('val', None, imagenet / 'val', n_per_class=2)
    assert (len(val), val.candidates, val.y.tolist()) == (6, [0, 1, 2], [0, 0, 1, 1, 2, 2])
    assert val.images([0]).shape == (1, 3, 256, 256)
    r = imagenet_variant('r', imagenet / 'r', imagenet / 'val', n_per_class=None)
    assert (r.candidates, r.y.tolist()) == ([5, 7], [5, 7])  # labels in ImageNet-1k ids
    c = imagenet_variant('c', None, imagenet / 'val', corruption='jpeg_compression')
    assert c.name == 'imagenet-c-generated/jpeg@3' and len(c) == 6
    with pytest.raises(ValueError, match='needs its folder'):
        imagenet_variant('a', None, imagenet / 'val')
    # ImageNet-V2 names its folders 0..999 (class ids), ImageNet-C nests corruption/severity
    v2 = imagenet / 'v2'
    _jpegs(v2, ['3', '9'], 1, np.random.default_rng(1))
    assert imagenet_variant('v2', v2, imagenet / 'val').candidates == [3, 9]
    c = imagenet / 'c' / 'gaussian_noise' / '3'
    _jpegs(c, [WNIDS[4]], 2, np.random.default_rng(2))
    got = imagenet_variant('c', imagenet / 'c', imagenet / 'val', corruption='gaussian_noise')
    assert (got.name, got.y.tolist()) == ('imagenet-c/gaussian_noise@3', [4, 4])


def test_randar_l_official_files_through_arclf_eval(imagenet, vq_file, tmp_path):
    """The done-when of issue 14: `arclf eval` with official-layout files (a .pt with 'model', a
    .safetensors) and an ImageNet-layout folder gives a Table 2 row; full-size RandAR-L."""
    from safetensors.torch import save_file

    gpt = tmp_path / 'randar_0.3b_llamagen_360k_bs_1024_lr_0.0004.safetensors'
    save_file(_official('randar_l'), str(gpt))
    out = tmp_path / 'imagenet_r.json'
    arclf_cmd('eval', '--model', str(gpt), '--tokenizer', str(vq_file), '--imagenet',
              str(imagenet / 'val'), '--variant', 'r', '--variant-root', str(imagenet / 'r'),
              '--per-class', '1', '--n', '1', '--bs', '2', '--out', str(out))
    r = json.loads(out.read_text())
    row = r['table2_row']
    assert (row['dataset'], row['samples'], row['images']) == ('imagenet-r', 1, 2)
    assert r['classes'] == 2 and r['forwards_per_image'] == 2  # candidates = classes present
    assert row['ci95'][0] <= row['top1'] <= row['ci95'][1]
    assert row['seconds_per_image'] > 0 and row['hardware'] and 'arclf eval' in row['command']
    scores = torch.load(out.with_suffix('.scores.pt'), weights_only=True)['scores']
    assert scores.shape == (2, 2, 1) and torch.isfinite(scores).all()


@pytest.fixture(scope='module')
def small_vq():
    "VQ-16's layout of levels and codes at a quarter of its width: 256 px -> 16x16 of 16384."
    torch.manual_seed(0)
    return create_model('vq16', ch=32).eval()


@pytest.fixture(scope='module')
def small_randar():
    "RandAR-L's width and vocabulary at depth 2 (a full-size layer stack costs minutes here)."
    torch.manual_seed(0)
    m = create_model('randar_l', n_layer=2)
    for p in m.parameters():  # random weights everywhere (the release zero-inits the head)
        torch.nn.init.normal_(p, std=0.02)
    torch.nn.init.normal_(m.output.weight, std=0.1)  # logits of std ~3, not a flat softmax
    return m


def test_bf16_autocast_agrees_with_fp32(imagenet, small_vq, small_randar):
    """bf16 autocast (the GPU default) and fp32 scores of the same sequences: log p(x | π, c) sums
    256 token log-probs of about -9.7 each; bf16 keeps 8 bits of mantissa in the matmuls, and the
    log-softmax and the sums run in fp32. Measured here (random weights): at most 0.004 nats on
    -2485 (1.4e-6 relative); the stated tolerance is 1e-4 relative (0.25 nats). Trained weights,
    with sharper distributions, may differ more: a GPU run with the released weights will tell."""
    val = imagenet_variant('val', None, imagenet / 'val', n_per_class=1)
    x = val.images([0])
    s = {}
    for dt in ('fp32', 'bf16'):
        clf = create_classifier(small_randar, small_vq, autocast_dtype=dt)
        s[dt] = sample_scores(clf, x, [0, 1], 1)
    assert torch.isfinite(s['bf16']).all()
    rel = ((s['bf16'] - s['fp32']).abs() / s['fp32'].abs()).max().item()
    assert rel < 1e-4, rel  # the stated tolerance
    assert torch.equal(s['fp32'].argmax(1), s['bf16'].argmax(1))


def test_interrupted_imagenet_evaluation_resumes(imagenet, small_vq, small_randar, tmp_path):
    """Scores are seeded per image: an evaluation interrupted after its first image and resumed
    with another batch size gives the tensor of an uninterrupted run."""
    val = imagenet_variant('val', None, imagenet / 'val', n_per_class=1)
    clf = create_classifier(small_randar, small_vq)
    kw = dict(classes=[0, 1], progress=False, limit=2)
    full = evaluate(clf, val, 1, bs=2, **kw)
    out, score, calls = tmp_path / 'scores.pt', clf.score, []

    def dies_on_second_batch(*a, **k):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return score(*a, **k)

    clf.score = dies_on_second_batch  # an instance attribute: the evaluation key is unchanged
    with pytest.raises(KeyboardInterrupt):
        evaluate(clf, val, 1, bs=1, out=out, save_every=1, **kw)
    del clf.score
    assert not out.exists() and len(list(tmp_path.glob('scores.pt*.part'))) == 1
    r = evaluate(clf, val, 1, bs=2, out=out, **kw)
    assert torch.equal(r['scores'], full['scores']) and not list(tmp_path.glob('*.part'))


def test_random_crop_per_sample(imagenet, small_vq, small_randar):
    """`crop='random'`: every order gets its own crop, drawn from the image's generator before
    the order, as the official script does with `--use_augmentations`."""
    from arclf.data import arr_to_tensor, random_crop_arr

    val = imagenet_variant('val', None, imagenet / 'val', n_per_class=1, crop='random')
    clf = create_classifier(small_randar, small_vq, crop='random')
    assert isinstance(clf, RandomCropTTA)
    x = val.images([0])
    s = sample_scores(clf, x, [0, 1], 2, seed=3, indices=[4])
    # the official per-trial procedure, given the same generator: crop, tokenize, order, score
    from arclf.scorer import image_generator

    g, inner, ref = image_generator(3, 4), clf.clf, []
    for _ in range(2):
        view = arr_to_tensor(random_crop_arr(x.images[0], 256, 0.8, 1.0, g))[None]
        ids = inner.tokenizer.encode(view)
        order = torch.randperm(256, generator=g)[None]
        ref.append(torch.stack([small_randar.log_likelihood(ids, torch.tensor([c]), order)
                                for c in (0, 1)], 1))
    torch.testing.assert_close(s[0], torch.cat(ref).T, rtol=1e-5, atol=1e-3)


def test_dit_sit_with_sd_vae_end_to_end(imagenet, tmp_path):
    """DiT-XL/2's and SiT-XL/2's path: ImageNet folder -> SD-VAE (native encoder, official layout
    file) -> reduced-depth XL/2 (depth 1, 128 px: a 16x16 latent) -> a Table 2 row."""
    from safetensors.torch import save_file

    vae = tmp_path / 'diffusion_pytorch_model.safetensors'
    save_file(random_state_dict(sd_vae_layout(), torch.Generator().manual_seed(1)), str(vae))
    val = imagenet_variant('val', None, imagenet / 'val', size=128, n_per_class=1)
    for kind in ('dit', 'sit'):
        torch.manual_seed(0)
        m = DiT_XL_2(depth=1, input_size=16, kind=kind)
        r = run_eval(m, val, n=2, step=500, progress=False,
                     clf_kw=dict(encoder=load_sd_vae(vae)))  # the official posterior sample: the default
        assert r['classes'] == 3 and r['images'] == 3 and r['n'] == 2
        assert 0 <= r['table2_row']['top1'] <= 100


def test_dit_posterior_sample_per_timestep_equals_the_official_procedure(imagenet, tmp_path):
    """Given the same draws, DiT's scores equal the official per-timestep loop: encode, draw the
    VAE posterior sample, then the noise; q_sample; minus the squared error of the eps head."""
    from arclf.diffusion import DDPMSchedule
    from arclf.scorer import image_generator

    torch.manual_seed(0)
    enc = load_sd_vae(random_state_dict(sd_vae_layout(), torch.Generator().manual_seed(1)))
    m = DiT_XL_2(depth=1, input_size=8).eval()
    clf = create_classifier(m, encoder=enc, sample_latent=True, step=250)
    x = imagenet_variant('val', None, imagenet / 'val', size=64, n_per_class=1).images([0])
    s = sample_scores(clf, x, [0, 2], 3, seed=7, indices=[5])  # [1, 2 classes, 3 timesteps]
    g, sched, ref = image_generator(7, 5), DDPMSchedule(), []
    mean, std = enc.moments(x)
    with torch.no_grad():
        for t in clf.timesteps(3).tolist():
            post = torch.randn(mean.shape[1:], generator=g)
            noise = torch.randn(mean.shape[1:], generator=g)[None]
            xt = sched.q_sample(mean + std * post, torch.tensor([t]), noise)
            ref.append([-((noise - m.predict(xt, torch.tensor([t]), torch.tensor([c]))) ** 2).sum()
                        for c in (0, 2)])
    torch.testing.assert_close(s[0], torch.tensor(ref).T, rtol=1e-5, atol=1e-3)


def test_random_crops_keep_the_timestep_sequence(imagenet):
    "With per-sample crops, a diffusion classifier's sample k still has the k-th timestep."
    from arclf.scorer import draw_samples

    enc = load_sd_vae(random_state_dict(sd_vae_layout(), torch.Generator().manual_seed(1)))
    clf = create_classifier(DiT_XL_2(depth=1, input_size=8), encoder=enc, step=100, crop='random')
    x = imagenet_variant('val', None, imagenet / 'val', size=64, n_per_class=1, crop='random')
    s = draw_samples(clf, clf.prepare(x.images([0])), 4, 0, [0])
    assert torch.equal(s['t'], clf.clf.timesteps(4)[None]) and len(set(s['t'][0].tolist())) == 4
    assert s['z'].shape == (1, 4, 2, 4, 8, 8)  # a view per sample: posterior mean and std


def test_a_file_several_models_could_read_is_refused():
    "DiT-XL/2 and SiT-XL/2 share a layout: a bare file of it needs its model named."
    from arclf.classifiers import _official

    with torch.device('meta'):
        sd = create_model('SiT_XL_2').state_dict()
    with pytest.raises(ValueError, match='DiT_XL_2, SiT_XL_2.*--model NAME --weights'):
        _official(sd, 'SiT-XL-2-256.pt')


def test_weights_flag_loads_a_file_into_a_named_model(tmp_path):
    from arclf.core import WEIGHTS_DIR

    out = tmp_path / 'r.json'
    arclf_cmd('eval', '--model', 'dit_fmnist', '--weights', str(WEIGHTS_DIR / 'dit_fmnist.pt'),
              '--n', '1', '--step', '500', '--n-per-class', '1', '--out', str(out))
    assert json.loads(out.read_text())['table2_row']['images'] == 10
