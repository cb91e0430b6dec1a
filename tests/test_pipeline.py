"""The front door end to end: `import arclf`, the model registry, shipped records,
`create_classifier`, and the regressions of the refactor (batch-size invariance with test-time
noise, removed code staying removed)."""

import json
import os
from pathlib import Path
import pytest
import torch
import arclf
from arclf.core import (
    RECORD_KEYS,
    layout,
    layout_diff,
    model_spec,
    save_pretrained,
    load_pretrained,
)
from arclf.data import load_dataset, to_float
from arclf.randar import RandAR

torch.set_num_threads(2)
LAYOUT = Path(__file__).parent / 'layouts' / 'randar_l_keys.json'
TOKENIZERS = ['maskgit_vq', 'vq16', 'vq_cifar_l', 'vq_cifar_s', 'vq_fmnist_l', 'vq_fmnist_s']


@pytest.fixture(scope='module')
def fmnist(data_root):
    """The first 2 Fashion-MNIST test images of each class (20), as floats in [-1, 1], and their
    labels."""
    ds = load_dataset('fashion_mnist', 'test', root=data_root).subset(2)
    x = to_float(ds.x)
    assert x.shape == (20, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert ds.y.tolist() == [c for c in range(10) for _ in range(2)]
    return x, ds.y


def test_front_door_exports():
    expected = {
        'create_model',
        'list_models',
        'model_meta',
        'register_model',
        'seed_everything',
        'load_dataset',
        'GenerativeClassifier',
        'RandARClassifier',
        'DiffusionClassifier',
        'create_classifier',
        'sample_scores',
        'evaluate',
        'prune',
        'prune_evaluate',
        'aggregate',
        'predict',
        'accuracy',
        'RULES',
    }
    assert set(arclf.__all__) == expected
    assert all(callable(getattr(arclf, n)) for n in expected - {'RULES'})
    assert arclf.RULES == ('lower_bound', 'likelihood', 'posterior')
    assert isinstance(arclf.__version__, str) and arclf.__version__.count('.') == 2


def test_registry_lists_models_by_family():
    assert arclf.list_models(family='tokenizer') == TOKENIZERS
    assert arclf.list_models(family='randar') == [
        'randar_cifar',
        'randar_fmnist',
        'randar_fmnist_raster',
        'randar_l',
        'randar_l_rc',
        'randar_xl',
    ]
    assert arclf.list_models(family='dit') == ['DiT_XL_2', 'dit_cifar', 'dit_fmnist', 'dit_xl2_rc']
    assert arclf.list_models(family='sit') == ['SiT_XL_2', 'sit_cifar', 'sit_fmnist']
    assert arclf.list_models('vq_fmnist*') == ['vq_fmnist_l', 'vq_fmnist_s']
    assert 'randar_cifar' not in arclf.list_models(pretrained=True)
    assert 'randar_cifar' in arclf.list_models(pretrained=False)


def test_shipped_randar_loads_with_its_record():
    m = arclf.create_model('randar_fmnist', pretrained=True)
    assert isinstance(m, RandAR) and not m.training
    assert m.cfg.vocab_size == 256 and m.cfg.grid == (7, 7) and m.cfg.order == 'random'
    assert m.meta['tokenizer'] == 'vq_fmnist_s' and m.meta['family'] == 'randar'
    ref = load_pretrained(RandAR, 'randar_fmnist')
    assert all(
        torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values())
    )
    assert not torch.equal(m.output.weight, arclf.create_model('randar_fmnist').output.weight)
    raster = arclf.create_model('randar_fmnist_raster', pretrained=True)
    assert raster.cfg.order == 'raster' and raster.cfg.vocab_size == 256


def test_randar_l_on_the_meta_device_has_the_official_layout():
    with torch.device('meta'):
        m = arclf.create_model('randar_l')
    official = json.loads(LAYOUT.read_text())
    assert layout_diff(official, layout(m)) == ''
    assert list(layout(m)) == list(official)
    assert m.output.weight.is_meta


def test_misspelt_names_suggest_the_close_ones():
    with pytest.raises(ValueError, match="did you mean.*'randar_fmnist'"):
        arclf.create_model('randar_fmnst')
    with pytest.raises(ValueError, match='did you mean'):
        arclf.create_classifier('randar_fmnst')
    with pytest.raises(ValueError, match='did you mean'):
        model_spec('vq_fmnist')


def test_official_weights_missing_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('ARCLF_WEIGHTS', str(tmp_path))
    monkeypatch.setenv('HOME', str(tmp_path))  # no ~/.cache/arclf/weights copy either
    monkeypatch.setenv('ARCLF_OFFLINE', '1')  # not a 1.2 GB download from Hugging Face
    with pytest.raises(FileNotFoundError) as e:
        arclf.create_model('randar_l', pretrained=True)
    msg = str(e.value)
    assert (
        'randar_0.3b_llamagen_360k_bs_1024_lr_0.0004.safetensors' in msg and 'ARCLF_WEIGHTS' in msg
    )
    with pytest.raises(FileNotFoundError, match='nope.pt'):
        arclf.create_model('randar_fmnist', pretrained=tmp_path / 'nope.pt')
    with pytest.raises(ValueError, match='no pretrained weights'):
        arclf.create_model('randar_cifar', pretrained=True)


def test_pretrained_path_loads_an_official_style_state_dict_strictly(tmp_path):
    torch.manual_seed(0)
    ref = arclf.create_model('randar_fmnist')
    for p in ref.parameters():  # distinguishable from a fresh init
        torch.nn.init.normal_(p.data, std=0.3)
    p = tmp_path / 'plain.pt'
    torch.save(ref.state_dict(), p)  # a plain state dict, as official releases are
    m = arclf.create_model('randar_fmnist', pretrained=p)
    got, want = m.state_dict(), ref.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert not m.training
    wrapped = tmp_path / 'wrapped.pt'
    torch.save({'model': ref.state_dict(), 'steps': 10}, wrapped)  # a training checkpoint
    m = arclf.create_model('randar_fmnist', pretrained=wrapped)
    assert torch.equal(m.output.weight, ref.output.weight)
    bad = tmp_path / 'bad.pt'
    torch.save({k: v for k, v in ref.state_dict().items() if k != 'norm.weight'}, bad)
    with pytest.raises(ValueError, match=r'missing key\(s\): norm\.weight'):
        arclf.create_model('randar_fmnist', pretrained=bad)
    with pytest.raises(ValueError, match='wrong shape'):
        arclf.create_model('randar_fmnist', pretrained=p, vocab_size=4096)


def test_weights_folder_of_arclf_weights_comes_first(tmp_path, monkeypatch):
    m = arclf.create_model('vq_fmnist_s', ch=8, z_channels=8)
    save_pretrained(m, tmp_path / 'vq_fmnist_s.pt', family='tokenizer', preset='vq_fmnist_s')
    monkeypatch.setenv('ARCLF_WEIGHTS', str(tmp_path))
    got = arclf.create_model('vq_fmnist_s', pretrained=True)
    assert got.cfg.ch == 8 and got.meta == {'family': 'tokenizer', 'preset': 'vq_fmnist_s'}


def test_save_pretrained_accepts_only_the_record_schema(tmp_path):
    m = arclf.create_model('vq_fmnist_s', ch=8, z_channels=8)
    with pytest.raises(ValueError, match="unknown record fields.*'history'"):
        save_pretrained(m, tmp_path / 'x.pt', family='tokenizer', history=[])
    assert not (tmp_path / 'x.pt').exists()
    save_pretrained(m, tmp_path / 'x.pt', **{k: k for k in RECORD_KEYS})
    meta = arclf.model_meta(tmp_path / 'x.pt')
    assert set(meta) == {'config', *RECORD_KEYS} and meta['config']['ch'] == 8


def test_shipped_weights_hold_one_record_schema():
    shipped = [n for n in arclf.list_models(pretrained=True) if model_spec(n).source == 'shipped']
    assert set(shipped) == {
        'vq_fmnist_s',
        'vq_fmnist_l',
        'vq_cifar_s',
        'vq_cifar_l',
        'randar_fmnist',
        'randar_fmnist_raster',
        'dit_fmnist',
        'sit_fmnist',
    }
    for name in shipped:
        meta = arclf.model_meta(name)
        assert set(meta) <= {'config'} | set(RECORD_KEYS), (name, sorted(meta))
        assert {'family', 'preset', 'recipe', 'record', 'provenance'} <= set(meta), (
            name,
            sorted(meta),
        )
        assert meta['family'] == model_spec(name).family, name
        assert isinstance(meta['record'], dict) and isinstance(meta['recipe'], dict), name


def test_create_classifier_picks_the_classifier_and_order():
    rnd, ras = arclf.create_classifier('randar'), arclf.create_classifier('raster')
    assert isinstance(rnd, arclf.RandARClassifier) and rnd.raster is False
    assert ras.raster is True, 'an AR model defaults to the order it was trained in'
    assert rnd.tokenizer.vocab_size == rnd.model.cfg.vocab_size == 256
    assert arclf.create_classifier('raster', raster=False).raster is False
    dit = arclf.create_classifier('dit', step=100)
    assert isinstance(dit, arclf.DiffusionClassifier) and len(dit.grid) == 10 and dit.kind == 'dit'
    assert arclf.create_classifier('sit').kind == 'sit'


def test_shipped_randar_classifies_fashion_mnist(fmnist):
    x, y = fmnist
    p = arclf.create_classifier('randar').predict(x, n=5)
    assert p.shape == (len(x),) and p.dtype == torch.long and ((p >= 0) & (p < 10)).all()
    acc = (p == y).float().mean().item()
    assert acc >= 0.6, f'the shipped RandAR gets ~80% here, got {acc:.0%}'


def test_randar_scores_do_not_depend_on_batch_size_with_test_time_noise(fmnist):
    x, y = fmnist
    clf = arclf.create_classifier('randar_fmnist', noise_t=0.1)
    a = arclf.evaluate(clf, (x, y), n=3, bs=1, progress=False)['scores']
    b = arclf.evaluate(clf, (x, y), n=3, bs=16, progress=False)['scores']
    assert a.shape == (20, 10, 3) and torch.isfinite(a).all()
    assert torch.equal(a, b), f'bs=1 vs bs=16 differ by up to {(a - b).abs().max():.3g}'
    clean = arclf.evaluate(
        arclf.create_classifier('randar_fmnist'), (x, y), n=3, bs=16, progress=False
    )['scores']
    assert not torch.allclose(a, clean), 'noise_t=0.1 must change the scores'
    again = arclf.evaluate(clf, (x, y), n=3, bs=7, seed=1, progress=False)['scores']
    assert not torch.equal(a, again), 'another seed draws other noise and orders'


def test_diffusion_scores_do_not_depend_on_batch_size(fmnist):
    x, y = fmnist
    clf = arclf.create_classifier('dit', step=100)
    a = arclf.evaluate(clf, (x, y), n=3, bs=1, progress=False)['scores']
    b = arclf.evaluate(clf, (x, y), n=3, bs=5, progress=False)['scores']
    assert a.shape == (20, 10, 3) and torch.isfinite(a).all() and (a <= 0).all()
    assert torch.equal(a, b), f'bs=1 vs bs=5 differ by up to {(a - b).abs().max():.3g}'


def test_removed_code_stays_removed():
    import arclf.scorer, arclf.tokenizer, arclf.randar, arclf.diffusion, arclf.cli, arclf.training

    removed = {
        arclf.scorer: ('cat_samples', 'class_probs', 'fit_temperature', 'prune_scores'),
        arclf.tokenizer: ('VQ_PRESETS', 'vq_config'),
        arclf.randar: ('PRESETS', 'load_randar'),
        arclf.diffusion: (
            'PRESETS',
            'meta_model',
            'OracleEps',
            'dc_pruning_schedule',
            'dc_adaptive_predict',
        ),
        arclf.cli: ('build_classifier', 'CLASSIFIERS', 'DEFAULT_MODELS'),
        arclf.training: ('train_fmnist',),
    }
    for mod, names in removed.items():
        back = [n for n in names if hasattr(mod, n)]
        assert not back, f'{mod.__name__} has removed names {back} again'


def test_results_files_carry_their_provenance(tmp_path):
    from arclf.experiments import write_results, read_results, parse_plan

    rec = write_results(
        tmp_path / 'r.json', {'acc': 0.5}, markdown='| acc |\n| 0.5 |', command='arclf x'
    )
    back = read_results(tmp_path / 'r.json')
    assert back == json.loads(json.dumps(rec)) and back['acc'] == 0.5
    assert back['run_info']['command'] == 'arclf x' and back['run_info']['torch'] == str(
        torch.__version__
    )
    md = (tmp_path / 'r.md').read_text()
    assert md.startswith('| acc |') and 'Made by `arclf x`' in md.splitlines()[-1]
    with pytest.raises(FileNotFoundError, match='no results'):
        read_results(tmp_path / 'missing.json')
    (tmp_path / 'bad.json').write_text('{')
    with pytest.raises(ValueError, match='not a results file'):
        read_results(tmp_path / 'bad.json')
    assert parse_plan('2:3,20:1') == [(2, 3), (20, 1)]
    with pytest.raises(ValueError, match='--prune'):
        parse_plan('2-3')


class _Crafted:
    "An object whose unpickling would run a command."

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f'touch {self.target}',))


def test_training_state_file_runs_no_code(tmp_path):
    "A crafted pickle at a resume path is refused with a message naming the file; nothing runs."
    from arclf.training import resume

    flag, ckpt = tmp_path / 'ran', tmp_path / 'run.pt'
    torch.save({'model': _Crafted(flag)}, ckpt)
    with pytest.raises(ValueError, match='not a readable training state'):
        resume(None, ckpt)
    assert not flag.exists()
