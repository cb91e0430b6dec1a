"The `arclf` command: help, data summary, evaluation with the shipped models, and errors a user can act on."
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def arclf(*args, ok=True, timeout=600):
    p = subprocess.run([sys.executable, '-m', 'arclf.cli', *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'OMP_NUM_THREADS': '2'})
    if ok: assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p

def test_help_lists_every_command():
    out = arclf('--help').stdout
    for c in ('data', 'demo', 'eval', 'train', 'bench'): assert c in out
    ev = arclf('eval', '--help').stdout
    for opt in ('--clf', '--dataset', '--n ', '--n-per-class', '--prune', '--step', '--out'): assert opt in ev

def test_data_summary(data_root):
    out = arclf('data', '--root', str(data_root)).stdout
    assert '60000' in out and '50000' in out

@pytest.mark.parametrize('clf,n', [('randar', 3), ('raster', 1), ('dit', 3)])
def test_eval_writes_results(data_root, tmp_path, clf, n):
    arclf('eval', '--clf', clf, '--dataset', 'fashion_mnist+jpeg', '--n', str(n), '--n-per-class', '1', '--root', str(data_root),
          '--out', str(tmp_path/'r.json'))
    r = json.loads((tmp_path/'r.json').read_text())
    assert r['images'] == 10 and set(r['acc']) == {'lower_bound', 'likelihood', 'posterior'}
    assert 0 <= r['acc']['lower_bound'] <= 1 and r['forwards_per_image'] == 10 * n
    assert r['run_info']['command'] and r['run_info']['torch']

def test_eval_with_pruning(data_root, tmp_path):
    arclf('eval', '--clf', 'randar', '--n-per-class', '1', '--prune', '1:3,3:1', '--root', str(data_root), '--out', str(tmp_path/'p.json'))
    r = json.loads((tmp_path/'p.json').read_text())
    assert r['forwards_per_image'] == 10 * 1 + 3 * 2

def test_errors_name_the_problem(tmp_path):
    p = arclf('eval', '--dataset', 'mnist', ok=False)
    assert p.returncode != 0 and 'unknown dataset' in p.stderr
    p = arclf('eval', '--model', str(tmp_path/'missing.pt'), ok=False)
    assert p.returncode != 0 and 'missing.pt' in p.stderr

def test_configs_are_the_shipped_recipes():
    "Every config names a family and matches the recipe stored in the weights it reproduces."
    import torch
    from arclf.cli import config_argv
    for p in sorted((ROOT/'configs').glob('*.json')):
        fam, argv = config_argv(p)
        w = ROOT/'arclf'/'weights'/f'{p.stem}.pt'
        assert w.exists(), f'{p.name} has no shipped weights {w.name}'
        meta = torch.load(w, map_location='cpu', weights_only=True)['meta']
        recipe = meta.get('recipe', {})
        flags = dict(zip(argv[len(argv) % 2::2], argv[len(argv) % 2 + 1::2]))
        for k in ('epochs', 'bs', 'lr'):
            if k in recipe: assert float(flags[f'--{k}']) == float(recipe[k]), (p.name, k, flags, recipe)

def test_train_config_errors(tmp_path):
    p = arclf('train', '--config', str(tmp_path/'nope.json'), ok=False)
    assert p.returncode == 2 and 'config not found' in p.stderr
    p = arclf('train', 'dit', '--config', str(ROOT/'configs'/'randar_fmnist.json'), ok=False)
    assert p.returncode == 2 and "is a 'randar' config" in p.stderr

def test_train_a_cifar_model(data_root, tmp_path):
    "`arclf train` takes the dataset: a CIFAR-10 DiT has 3 input channels at 32 px and records its recipe."
    arclf('train', 'dit', '--dataset', 'cifar10', '--n-train', '64', '--bs', '32', '--device', 'cpu', '--root', str(data_root),
          '--log-every', '0', '--out', str(tmp_path/'dit.pt'))
    import torch
    d = torch.load(tmp_path/'dit.pt', weights_only=True)
    assert (d['config']['in_channels'], d['config']['input_size']) == (3, 32)
    assert d['meta']['dataset'] == 'cifar10' and d['meta']['recipe']['steps'] == 2 and d['meta']['run_info']['torch']

def test_reproduce_errors(tmp_path):
    p = arclf('reproduce', '--plan', 'nope', ok=False)
    assert p.returncode == 2 and 'plan not found' in p.stderr and 'cpu' in p.stderr
    (tmp_path/'p.json').write_text(json.dumps(dict(name='x', datasets=dict(mnist=dict(models={})))))
    p = arclf('reproduce', '--plan', str(tmp_path/'p.json'), ok=False)
    assert p.returncode == 2 and "dataset 'mnist' has no small presets" in p.stderr

def test_train_noise_augmentation(data_root, tmp_path):
    "`--noise-t` trains RandAR on the tokens of noisy latents and records t; a bad t or a config typo is refused by name."
    import torch
    common = ['--n-train', '64', '--bs', '32', '--device', 'cpu', '--root', str(data_root), '--log-every', '0',
              '--cfg', 'n_layer=1', '--cfg', 'dim=32', '--cfg', 'n_head=2']
    arclf('train', 'randar', '--noise-t', '0.05', *common, '--out', str(tmp_path/'r.pt'))
    d = torch.load(tmp_path/'r.pt', weights_only=True)
    assert d['meta']['recipe']['noise_t'] == 0.05 and d['meta']['recipe']['steps'] == 2 and d['meta']['tokenizer'] == 'vq_fmnist_s'
    p = arclf('train', 'randar', '--noise-t', '1.5', *common, '--out', str(tmp_path/'bad.pt'), ok=False)
    assert p.returncode == 2 and 'noise_t=1.5' in p.stderr
    p = arclf('train', 'randar', *common, '--cfg', 'n_layers=1', '--out', str(tmp_path/'bad.pt'), ok=False)
    assert p.returncode == 2 and "['n_layers'] name no field of RandARConfig" in p.stderr and not (tmp_path/'bad.pt').exists()
    p = arclf('train', 'randar', *common, '--cfg', 'order=raster', '--out', str(tmp_path/'bad.pt'), ok=False)
    assert p.returncode == 2 and "set ['order'] with their own flags (--order)" in p.stderr

def test_experiment_commands_refuse_bad_input(tmp_path):
    p = arclf('wilds', '--p', '0.3', '--out', str(tmp_path/'w'), '--runs', str(tmp_path/'r'), ok=False)
    assert p.returncode == 2 and 'p=0.3 must lie in [0.5, 1]' in p.stderr
    assert 'ablations' in arclf('--help').stdout and 'wilds' in arclf('--help').stdout
