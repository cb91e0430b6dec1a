#!/usr/bin/env python
"""One-off: move the committed results files to the one results schema of `arclf.experiments.write_results`
(the provenance of a file under its `run_info` key). Only keys move; no number changes.

    python tools/migrate_results.py
"""
import json
from pathlib import Path
import torch

R = Path(__file__).resolve().parent.parent/'results'
PROV = ('command', 'git_rev', 'git_dirty', 'python', 'torch', 'platform', 'cpu', 'cpu_count', 'torch_threads',
        'date', 'hardware', 'gpu', 'cuda')

def rewrite(p: Path, d: dict):
    p.write_text(json.dumps(d, indent=1) + ('\n' if p.read_text().endswith('\n') else ''))
    print('migrated', p.relative_to(R.parent))

def renamed(d: dict) -> dict:
    "`meta` (the old provenance key) -> `run_info`."
    return {('run_info' if k == 'meta' else k): v for k, v in d.items()}

for p in sorted((R/'diffusion').glob('table*.json')):
    d = json.loads(p.read_text())
    if 'meta' in d: rewrite(p, renamed(d))
p = R/'diffusion'/'fig6.json'
d = json.loads(p.read_text())
if 'run_info' not in d:
    report = json.loads((R/'diffusion'/'table8.json').read_text())['run_info']      # the same `report` run
    rewrite(p, {**{k: renamed(v) for k, v in d.items()}, 'run_info': report})
for p in sorted((R/'diffusion').glob('scores_*.pt')):
    # our own committed file, written before arclf stored versions as plain strings (a TorchVersion
    # inside): read it once with full unpickling, then it loads with weights_only=True for good
    d = torch.load(p, weights_only=False)
    if 'meta' in d:
        d = renamed(d)
        d['run_info'] = {k: str(v) if isinstance(v, str) else v for k, v in d['run_info'].items()}
        torch.save(d, p)
        print('migrated', p.relative_to(R.parent))
for p in (R/'randar'/'bench.json', R/'tokenizer'/'bench.json'):
    d = json.loads(p.read_text())
    if 'run_info' not in d:
        rewrite(p, {**{k: v for k, v in d.items() if k not in PROV}, 'run_info': {k: d[k] for k in PROV if k in d}})
meta = R/'tokenizer'/'meta.json'
if meta.exists():
    runs = json.loads(meta.read_text())
    for key, info in runs.items():
        if not key.startswith('evaluate:'): continue
        info = {k: v for k, v in info.items() if k != 'presets'}
        for ds in key.split(':', 1)[1].split(','):
            for p in [R/'tokenizer'/f'latent_noise_{ds}.json'] + [R/'tokenizer'/f'{pr}.json' for pr in
                                                                  runs[key]['presets']]:
                d = json.loads(p.read_text())
                if 'run_info' not in d: rewrite(p, {**d, 'run_info': info})
    meta.unlink()
    print('removed', meta.relative_to(R.parent), '(each file now carries its own run_info)')
