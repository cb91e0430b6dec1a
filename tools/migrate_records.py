#!/usr/bin/env python
"""One-off: rewrite the record (`meta`) of the shipped weights in `arclf/weights/` into the one schema of
`arclf.core.RECORD_KEYS` (family, preset, tokenizer, recipe, record, provenance). The tensors and the config are
copied unchanged (checked bit for bit), so every score the weights give stays the same.

    python tools/migrate_records.py          # rewrites the files whose record is in an old schema
"""
import sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from arclf.core import atomic_save, RECORD_KEYS  # noqa: E402

PROVENANCE = ('command', 'git_rev', 'git_dirty', 'python', 'torch', 'platform', 'cpu', 'cpu_count',
              'torch_threads', 'date', 'hardware', 'gpu', 'cuda')

def migrate(name: str, m: dict) -> dict:
    "The record of shipped weight `name` in the one schema (old schemas: tokenizer, randar, diffusion)."
    if set(m) <= set(RECORD_KEYS): return m                              # already migrated
    if name.startswith('vq_'):                                           # train_tokenizer's schema
        recipe = dict(m['recipe'])
        command = recipe.pop('command', None)
        prov = dict(m.get('env', {}), command=command)
        metrics = dict(m['metrics'])
        secs = metrics.pop('train_seconds')
        return dict(family='tokenizer', preset=recipe.pop('preset'), recipe=recipe, provenance=prov,
                    record=dict(history=m['history'], train_seconds=secs, metrics=metrics))
    if name.startswith('randar_'):                                       # the old train_fmnist schema
        prov = {k: m[k] for k in PROVENANCE if k in m}
        metrics = {k: m[k] for k in ('test_nll_random', 'test_nll_raster', 'eval_seconds', 'params')}
        curve = [l for _, l in m['loss_curve']]
        return dict(family='randar', preset=m['preset'], tokenizer=m['tokenizer'], recipe=m['recipe'],
                    provenance=prov, record=dict(history=m['history'], train_seconds=m['train_seconds'],
                                                 loss_curve=curve, loss_curve_every=5, metrics=metrics))
    if name.startswith(('dit_', 'sit_')):                                # train_diffusion's schema
        recipe = dict(m['recipe'])
        kind = recipe['kind']
        cmd = f'python -m arclf.diffusion train --kind {kind} (the command of the time)'
        return dict(family=kind, preset=recipe.pop('preset'), recipe=recipe,
                    provenance=dict(torch=m.get('torch'), command=cmd),
                    record=dict(history=m['history'], train_seconds=m['train_seconds'],
                                steps=recipe.pop('steps'), stored_dtype=m.get('stored_dtype')))
    raise ValueError(f'no migration for {name}')

def fill(m: dict) -> dict:
    "The record's `steps`, where an old schema kept them only in the history (its last `iter`)."
    rec = m['record']
    if 'steps' not in rec and rec.get('history') and 'iter' in rec['history'][-1]:
        return dict(m, record=dict(rec, steps=rec['history'][-1]['iter']))
    return m

if __name__ == '__main__':
    for f in sorted((ROOT/'arclf'/'weights').glob('*.pt')):
        d = torch.load(f, map_location='cpu', weights_only=True)
        new = fill(migrate(f.stem, d['meta']))
        if new == d['meta']: print(f'{f.name}: already in the one schema'); continue
        atomic_save(dict(config=d['config'], model=d['model'], meta=new), f)
        back = torch.load(f, map_location='cpu', weights_only=True)
        assert back['config'] == d['config']
        assert all(torch.equal(back['model'][k], v) and back['model'][k].dtype == v.dtype
                   for k, v in d['model'].items()) and back['model'].keys() == d['model'].keys()
        print(f'{f.name}: record migrated ({sorted(new)}); tensors identical')
