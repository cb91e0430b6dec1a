"""The `arclf` command: help, data summary, evaluation with the shipped models, and errors a user
can act on."""

import json
import os
import subprocess
import sys
from pathlib import Path
import pytest
import torch
import arclf
from arclf.cli import CONFIG_DIR, config_argv, list_configs
from arclf.classifiers import ALIASES
from arclf.core import model_meta

ROOT = Path(__file__).resolve().parents[1]


def arclf_cmd(*args, code=0):
    """`arclf ARGS`, run in this process (a subprocess per call would spend most of this file's time
    importing torch): what it printed, after checking that it exited with status `code` (0: success,
    2: a usage error). `test_console_script` runs the real entry point once."""
    import contextlib
    import io
    import types

    from arclf.cli import main

    out, err = io.StringIO(), io.StringIO()
    status, cwd, threads = 0, os.getcwd(), torch.get_num_threads()
    argv, sys.argv = sys.argv, ['arclf', *args]  # what run_info records as the command
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(cwd)
        sys.argv = argv
        torch.set_num_threads(threads)
    p = types.SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())
    assert p.returncode == code, (p.returncode, p.stdout[-2000:] + p.stderr[-2000:])
    return p


def test_console_script():
    "The installed `arclf` entry point runs (the other tests call `arclf.cli.main` in-process)."
    p = subprocess.run([sys.executable, '-m', 'arclf.cli', '--version'], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0 and p.stdout.strip().startswith('arclf 0.'), p.stdout + p.stderr
    p = subprocess.run([sys.executable, '-m', 'arclf.cli', 'eval', '--dataset', 'mnist'],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and 'Traceback' not in p.stderr and 'mnist' in p.stderr


def test_help_lists_every_command():
    out = arclf_cmd('--help').stdout
    for c in (
        'data',
        'models',
        'demo',
        'eval',
        'train',
        'bench',
        'tokenizers',
        'diffusion',
        'reproduce',
        'ablations',
        'orders',
        'wilds',
        'study',
    ):
        assert c in out, c
    ev = arclf_cmd('eval', '--help').stdout
    for opt in (
        '--clf',
        '--model',
        '--dataset',
        '--n ',
        '--n-per-class',
        '--prune',
        '--step',
        '--out',
        '--sigma',
        '--avarc-stages',
    ):
        assert opt in ev, opt
    assert '{randar,raster,dit,sit}' in ev
    assert '{eval,table7,report,diagnose}' in arclf_cmd('diffusion', '--help').stdout
    assert '{train,report,ship,findings}' in arclf_cmd('study', '--help').stdout
    assert '{training,scorer,tokenizer}' in arclf_cmd('bench', '--help').stdout
    tok = arclf_cmd('tokenizers', '--help').stdout
    assert all(n in tok for n in ('vq_fmnist_s', 'vq_fmnist_l', 'vq_cifar_s', 'vq_cifar_l'))
    tr = arclf_cmd('train', 'tokenizer', '--help').stdout
    for opt in ('--epochs', '--bs', '--lr', '--n-train', '--seed', '--out', '--threads'):
        assert opt in tr, opt
    assert 'var_vae_fmnist' in tr and 'var_vae_fmnist' not in tok  # VAR's VAE: no VQ study
    tv = arclf_cmd('train', 'var', '--help').stdout
    assert all(opt in tv for opt in ('--tokenizer', '--tokenizer-epochs', '--ckpt'))


def test_version():
    p = arclf_cmd('--version')
    assert p.stdout.strip() == f'arclf {arclf.__version__}'


def test_models_lists_the_registry():
    out = arclf_cmd('models').stdout
    for name in arclf.list_models():
        assert name in out, name
    assert 'randar_0.3b_llamagen_360k_bs_1024_lr_0.0004.safetensors' in out
    vq = arclf_cmd('models', 'vq*').stdout
    listed = [line.split()[0] for line in vq.splitlines() if line and not line.startswith(' ')]
    assert listed == arclf.list_models('vq*')
    assert arclf.list_models(family='tokenizer') == ['maskgit_vq', *listed]


def test_data_summary(data_root):
    out = arclf_cmd('data', '--root', str(data_root)).stdout
    assert '60000' in out and '50000' in out and '10000' in out
    assert 'fashion_mnist' in out and 'cifar10' in out


# chance is 0.1 on the 10 images; the seeded runs give 1.0, 1.0 and 0.6
@pytest.mark.parametrize('clf,n,min_acc', [('randar', 3, 0.7), ('raster', 1, 0.7), ('dit', 3, 0.4)])
def test_eval_writes_results(data_root, tmp_path, clf, n, min_acc):
    arclf_cmd(
        'eval',
        '--clf',
        clf,
        '--dataset',
        'fashion_mnist+jpeg',
        '--n',
        str(n),
        '--n-per-class',
        '1',
        '--root',
        str(data_root),
        '--out',
        str(tmp_path / 'r.json'),
    )
    r = json.loads((tmp_path / 'r.json').read_text())
    assert r['images'] == 10 and set(r['acc']) == {'lower_bound', 'likelihood', 'posterior'}
    assert r['model'] == ALIASES[clf] and r['n'] == n and r['dataset'] == 'fashion_mnist+jpeg'
    # 10 images: every accuracy is a whole number of tenths
    assert all(0 <= a <= 1 and abs(a * 10 - round(a * 10)) < 1e-6 for a in r['acc'].values())
    assert r['acc']['lower_bound'] >= min_acc, r['acc']  # the shipped models classify
    assert r['forwards_per_image'] == 10 * n
    assert r['classifier'] == ('DiffusionClassifier' if clf == 'dit' else 'RandARClassifier')
    assert len(r['acc_vs_n']) == 3 * n and {row['n'] for row in r['acc_vs_n']} == set(
        range(1, n + 1)
    )
    assert 'eval' in r['run_info']['command'] and r['run_info']['torch'] == str(torch.__version__)


def test_eval_by_model_name_and_path_agree(data_root, tmp_path):
    "`--model NAME`, `--model FILE` and `--clf ALIAS` evaluate the same shipped model the same way."
    common = ['--n', '1', '--n-per-class', '1', '--root', str(data_root)]
    arclf_cmd('eval', '--clf', 'raster', *common, '--out', str(tmp_path / 'a.json'))
    arclf_cmd('eval', '--model', 'randar_fmnist_raster', *common, '--out', str(tmp_path / 'b.json'))
    w = ROOT / 'arclf' / 'weights' / 'randar_fmnist_raster.pt'
    arclf_cmd('eval', '--model', str(w), *common, '--out', str(tmp_path / 'c.json'))
    a, b, c = (json.loads((tmp_path / f'{k}.json').read_text()) for k in 'abc')
    assert a['acc'] == b['acc'] == c['acc'] and a['acc_vs_n'] == b['acc_vs_n'] == c['acc_vs_n']
    assert a['model'] == b['model'] == 'randar_fmnist_raster'


def test_eval_with_pruning(data_root, tmp_path):
    arclf_cmd(
        'eval',
        '--clf',
        'randar',
        '--n-per-class',
        '1',
        '--prune',
        '1:3,3:1',
        '--root',
        str(data_root),
        '--out',
        str(tmp_path / 'p.json'),
    )
    r = json.loads((tmp_path / 'p.json').read_text())
    assert r['forwards_per_image'] == 10 * 1 + 3 * 2
    assert r['prune'] == [[1, 3], [3, 1]] and abs(r['acc'] * 10 - round(r['acc'] * 10)) < 1e-6
    assert r['acc'] >= 0.7, r['acc']  # chance: 0.1; this seeded run: 1.0


def test_errors_name_the_problem(tmp_path):
    p = arclf_cmd('eval', '--dataset', 'mnist', code=2)
    assert 'unknown dataset' in p.stderr
    p = arclf_cmd('eval', '--model', str(tmp_path / 'missing.pt'), code=2)
    assert 'missing.pt' in p.stderr
    p = arclf_cmd(
        'eval', '--model', 'randar_fmnst', code=2
    )  # a typo: the message names the real ones
    assert "'randar_fmnst'" in p.stderr and "'randar_fmnist'" in p.stderr
    p = arclf_cmd('eval', '--clf', 'vae', code=2)
    assert 'invalid choice' in p.stderr


def test_configs_are_the_shipped_recipes():
    """Every shipped config names a family and matches the recipe stored in the weights it
    reproduces. The generative models' are the study's: its recipe, stopped by the learning curve
    (their shipped weights are the curve's point at the step `record['trained']` names)."""
    names = list_configs()
    assert names == sorted(p.stem for p in CONFIG_DIR.glob('*.json')) and len(names) == 8
    assert not (ROOT / 'configs').exists(), 'the configs are package data now (arclf/configs)'
    for name in names:
        fam, argv = config_argv(CONFIG_DIR / f'{name}.json')
        assert (fam, argv) == config_argv(name), 'a shipped config is found by its name'
        meta = model_meta(name)  # the shipped weights of the same name
        assert meta['family'] == fam, name
        cfg = json.loads((CONFIG_DIR / f'{name}.json').read_text())
        positional = cfg.pop('positional', [])
        assert positional == ([meta['preset']] if fam == 'tokenizer' else []), name
        for k in ('family', 'threads', 'curve'):  # not part of the recipe (curve: a path)
            cfg.pop(k, None)
        assert cfg.pop('tokenizer', None) == meta.get(
            'tokenizer'
        ), name  # only AR models read tokens
        for k in ('epochs', 'bs', 'lr'):
            assert k in cfg and k in meta['recipe'], (name, k)
        for k, v in cfg.items():
            assert k in meta['recipe'] and meta['recipe'][k] == v, (
                name,
                k,
                v,
                meta['recipe'].get(k),
            )
        if fam != 'tokenizer':
            from arclf.study import RECIPE
            assert {k: meta['recipe'][k] for k in ('lr', 'schedule', 'ema')} == {
                k: RECIPE[k] for k in ('lr', 'schedule', 'ema')}, name
            # the recipe's epochs are a cap: the shipped run trained under one no larger than
            # today's (a constant-rate run continues into a larger one, notebook 06)
            assert meta['recipe']['epochs'] <= RECIPE['epochs'], name
            assert meta['record']['trained']['step'] > 0, name
        flags = dict(zip(argv[len(positional) :: 2], argv[len(positional) + 1 :: 2]))
        assert float(flags['--lr']) == float(meta['recipe']['lr']), name


def test_reproduce_plans_are_package_data():
    from arclf.reproduce import load_plan

    for name in ('cpu', 'cpu_full_ar', 'gpu'):
        plan = load_plan(name)
        assert Path(plan['path']).parent == CONFIG_DIR / 'reproduce' and plan['datasets'], name


def test_gpu_plan_trains_all_of_table2_for_equal_epochs():
    """The gpu plan is the comparison at equal training: every classifier of Table 2 on each
    dataset, each trained for the same number of epochs (A-VARC scores VAR's model)."""
    from arclf.reproduce import KINDS, load_plan

    for ds, d in load_plan('gpu')['datasets'].items():
        assert set(d['models']) == set(KINDS), ds
        epochs = {k: m['train']['epochs'] for k, m in d['models'].items() if 'train' in m}
        assert len(set(epochs.values())) == 1 and set(epochs) == set(KINDS) - {'avarc'}, epochs


def test_train_config_errors(tmp_path):
    p = arclf_cmd('train', '--config', str(tmp_path / 'nope.json'), code=2)
    assert 'config not found' in p.stderr
    p = arclf_cmd('train', 'dit', '--config', 'randar_fmnist', code=2)
    assert "is a 'randar' config" in p.stderr
    p = arclf_cmd('train', 'dit', '--config', str(CONFIG_DIR / 'randar_fmnist.json'), code=2)
    assert "is a 'randar' config" in p.stderr
    p = arclf_cmd('train', code=2)
    assert 'name a family' in p.stderr


def test_train_a_cifar_model(data_root, tmp_path):
    """`arclf train` takes the dataset: a CIFAR-10 DiT has 3 input channels at 32 px and records its
    recipe."""
    arclf_cmd(
        'train',
        'dit',
        '--dataset',
        'cifar10',
        '--n-train',
        '64',
        '--bs',
        '32',
        '--device',
        'cpu',
        '--root',
        str(data_root),
        '--log-every',
        '0',
        '--out',
        str(tmp_path / 'dit.pt'),
    )
    d = torch.load(tmp_path / 'dit.pt', weights_only=True)
    assert (d['config']['in_channels'], d['config']['input_size']) == (3, 32)
    meta = d['meta']
    assert set(meta) <= {'family', 'preset', 'tokenizer', 'recipe', 'record', 'provenance'}
    assert (meta['family'], meta['preset'], meta['recipe']['dataset']) == (
        'dit',
        'dit_cifar',
        'cifar10',
    )
    assert meta['record']['steps'] == 2 and len(meta['record']['loss_curve']) == 2
    assert meta['recipe']['n_train'] == 64 and meta['recipe']['bs'] == 32
    assert (
        meta['provenance']['torch'] == str(torch.__version__)
        and 'train' in meta['provenance']['command']
    )


def test_eval_a_saved_llamagen_record_by_path(data_root, tmp_path):
    """`arclf eval --model FILE` for a LlamaGen GPT saved with the project's own record (its
    tokenizer named in it): the AR classifier in raster order; A-VARC's options refused."""
    from arclf.core import create_model, save_pretrained

    torch.manual_seed(0)
    m = create_model('llamagen_tiny')
    with torch.no_grad():  # class dependence (the output layer starts at zero)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    f = tmp_path / 'lg.pt'
    save_pretrained(m, f, family='llamagen', preset='llamagen_tiny', tokenizer='vq_fmnist_s')
    common = ['--model', str(f), '--n-per-class', '1', '--root', str(data_root)]
    arclf_cmd('eval', *common, '--n', '2', '--out', str(tmp_path / 'r.json'))
    r = json.loads((tmp_path / 'r.json').read_text())
    assert (r['model'], r['classifier'], r['images']) == (str(f), 'RandARClassifier', 10)
    assert r['forwards_per_image'] == 10 * 2 and set(r['acc']) == {'lower_bound', 'likelihood',
                                                                   'posterior'}
    p = arclf_cmd('eval', *common, '--sigma', '0.1', code=2)
    assert 'apply to A-VARC (VAR models) only' in p.stderr


def test_train_a_tokenizer(data_root, tmp_path):
    "`arclf train tokenizer PRESET` (formerly `python -m arclf.tokenizer train`) with its flags."
    out = tmp_path / 't.pt'
    p = arclf_cmd(
        'train',
        'tokenizer',
        'vq_fmnist_s',
        '--epochs',
        '1',
        '--bs',
        '32',
        '--n-train',
        '64',
        '--lr',
        '1e-3',
        '--seed',
        '3',
        '--threads',
        '2',
        '--out',
        str(out),
    )
    metrics = json.loads(next(line for line in p.stdout.splitlines() if line.startswith('{')))
    assert {'mse', 'psnr', 'usage', 'perplexity'} <= set(metrics) and f'saved {out}' in p.stdout
    meta = model_meta(out)
    assert (meta['family'], meta['preset']) == ('tokenizer', 'vq_fmnist_s')
    assert meta['record']['steps'] == 2 and meta['record']['metrics'] == metrics
    r = meta['recipe']
    assert (r['epochs'], r['bs'], r['lr'], r['n_train'], r['seed']) == (1, 32, 1e-3, 64, 3)
    p = arclf_cmd('train', 'tokenizer', 'vq_fmnist_m', code=2)
    assert 'invalid choice' in p.stderr
    p = arclf_cmd('train', 'tokenizer', 'vq16', code=2)  # no small dataset of its own: not offered
    assert 'invalid choice' in p.stderr


def test_reproduce_errors(tmp_path):
    p = arclf_cmd('reproduce', '--plan', 'nope', code=2)
    assert 'plan not found' in p.stderr and 'cpu' in p.stderr
    (tmp_path / 'p.json').write_text(
        json.dumps(dict(name='x', datasets=dict(mnist=dict(models={}))))
    )
    p = arclf_cmd('reproduce', '--plan', str(tmp_path / 'p.json'), code=2)
    assert "dataset 'mnist' has no small presets" in p.stderr
    # --recover-hits: a malformed --weights, and a folder that holds no reproduction
    p = arclf_cmd('reproduce', '--recover-hits', str(tmp_path), '--weights', 'dit', code=2)
    assert "--weights 'dit': give KIND=FILE" in p.stderr
    p = arclf_cmd('reproduce', '--recover-hits', str(tmp_path / 'none'), code=2)
    assert 'results.json' in p.stderr


def test_train_noise_augmentation(data_root, tmp_path):
    """`--noise-t` trains RandAR on the tokens of noisy latents and records t; a bad t or a config
    typo is refused."""
    common = [
        '--n-train',
        '64',
        '--bs',
        '32',
        '--device',
        'cpu',
        '--root',
        str(data_root),
        '--log-every',
        '0',
        '--cfg',
        'n_layer=1',
        '--cfg',
        'dim=32',
        '--cfg',
        'n_head=2',
    ]
    arclf_cmd('train', 'randar', '--noise-t', '0.05', *common, '--out', str(tmp_path / 'r.pt'))
    d = torch.load(tmp_path / 'r.pt', weights_only=True)
    meta = d['meta']
    assert meta['recipe']['noise_t'] == 0.05 and meta['record']['steps'] == 2
    assert meta['tokenizer'] == 'vq_fmnist_s' and meta['recipe']['dataset'] == 'fashion_mnist'
    assert (d['config']['n_layer'], d['config']['dim'], d['config']['vocab_size']) == (1, 32, 256)
    p = arclf_cmd(
        'train', 'randar', '--noise-t', '1.5', *common, '--out', str(tmp_path / 'bad.pt'), code=2
    )
    assert 'noise_t' in p.stderr and '1.5' in p.stderr  # the message names the flag and the value
    p = arclf_cmd(
        'train',
        'randar',
        *common,
        '--cfg',
        'n_layers=1',
        '--out',
        str(tmp_path / 'bad.pt'),
        code=2,
    )
    assert "['n_layers'] name no field of RandARConfig" in p.stderr
    assert not (tmp_path / 'bad.pt').exists()
    p = arclf_cmd(
        'train',
        'randar',
        *common,
        '--cfg',
        'order=raster',
        '--out',
        str(tmp_path / 'bad.pt'),
        code=2,
    )
    assert "set ['order'] with their own flags (--order)" in p.stderr


def test_experiment_commands_refuse_bad_input(tmp_path):
    p = arclf_cmd(
        'wilds', '--p', '0.3', '--out', str(tmp_path / 'w'), '--runs', str(tmp_path / 'r'), code=2
    )
    assert 'p=0.3 must lie in [0.5, 1]' in p.stderr
    p = arclf_cmd('diffusion', 'plot', code=2)
    assert 'invalid choice' in p.stderr
