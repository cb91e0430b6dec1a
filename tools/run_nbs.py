#!/usr/bin/env python
"""Execute notebooks in place so that their stored outputs (what the docs show) come from a real run.

    python tools/run_nbs.py nbs/00_core.ipynb [more.ipynb ...] [--slow]

Cells flagged `#| slow` (and `#| notest`) are skipped unless `--slow` is given (which also sets ARCLF_SLOW=1, the
switch their bodies test, so that plain Jupyter skips them too); a skipped cell keeps the outputs it had. Stops at the first error. Afterwards run `nbdev_clean` (the notebooks are committed cleaned, with outputs).
"""
import os, sys, time
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.process import NBProcessor, extract_directives

def run(fn, slow=False):
    skip = set() if slow else {'slow', 'notest'}
    if slow: os.environ['ARCLF_SLOW'] = '1'
    nb = read_nb(fn)
    for c in nb.cells:
        if c.cell_type == 'code': c.directives_ = extract_directives(c, remove=False)
    kept = {}
    def pre(cell):
        if cell.cell_type != 'code': return True
        d = getattr(cell, 'directives_', {}) or {}
        if skip & d.keys():
            kept[id(cell)] = (cell.get('outputs', []), cell.get('execution_count'))
            return True
        return False
    os.environ.setdefault('ARCLF_DOCS_RUN', '1')
    sh = CaptureShell(fn)
    sh.set_path(Path(fn).parent.resolve())
    t, cwd = time.time(), os.getcwd()
    os.chdir(Path(fn).parent)                      # notebooks read ../results relative to nbs/, as nbdev_test runs them
    try: sh.run_all(nb, exc_stop=True, preproc=pre)
    finally: os.chdir(cwd)
    for c in nb.cells:
        if id(c) in kept: c['outputs'], c['execution_count'] = kept[id(c)]
        c.pop('directives_', None)
    write_nb(nb, fn)
    print(f'{fn}: {time.time() - t:.1f}s')

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    for f in args: run(f, slow='--slow' in sys.argv)
