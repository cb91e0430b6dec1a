"""Architecture rules for `arclf`, checked on the source with `ast` (nothing is imported or run).

The graph holds every import of an arclf module, including the ones inside functions and methods:
nbdev notebooks often defer imports into functions, and those still tie the modules together
(and still cycle at call time). Module names are relative to the package: 'core',
'experiments.tokenizers'; the package's own `__init__.py` is '__init__', a subpackage's
`__init__.py` is the subpackage's name.
"""
from __future__ import annotations

import ast
import functools
from collections import deque
from pathlib import Path
from typing import NamedTuple

import pytest

PKG_DIR = Path(__file__).resolve().parents[1] / 'arclf'

# Lower number = lower layer; an import must point strictly downward (layer-7 modules may import
# each other, the cycle test watches them). Place a new module here on purpose.
LAYERS = {
    'core': 0, 'data': 1, 'tokenizer': 2, 'randar': 3, 'diffusion': 3, 'scorer': 4,
    'classifiers': 5, 'training': 6, 'cli': 8,
    # model families beside randar: MaskGIT's VQ (a VQModel subclass, above the tokenizer module it
    # builds on) and LlamaGen's raster GPT, built from RandAR's blocks (one copy of the llama
    # blocks and the 2D RoPE), so just above it
    'maskgit': 3, 'llamagen': 3.5,
    # VAR's multi-scale VQ-VAE and next-scale transformer, one model module (it reuses the
    # tokenizer's convolutional blocks)
    'var': 3,
    # the discriminative baselines (timm networks, probes, their training through core's
    # fit_model) sit between the scorer, whose interface they implement, and the classifiers'
    # front door, which builds them: imports point strictly downward both ways.
    'discriminative': 4.5,
    # A-VARC, VAR's classifier, likewise: it implements the scorer's interface (and reuses its
    # prefix pruning) and the front door builds it
    'avarc': 4.5,
    # `python -m arclf` is the entry point, the one module allowed to sit above the CLI.
    '__main__': 9,
}
EXPERIMENT_LAYER = 7
EXPERIMENT_MODULES = {'bench', 'reproduce', 'ablations', 'wilds', 'tokenizer_study', 'diffusion_study',
                      'study'}
MODEL_MODULES = {'tokenizer', 'randar', 'diffusion', 'llamagen', 'maskgit', 'var'}


def layer_of(mod: str) -> int | None:
    "The layer of `mod`, None when it is not in the map."
    if mod in EXPERIMENT_MODULES or mod == 'experiments' or mod.startswith('experiments.'):
        return EXPERIMENT_LAYER
    return LAYERS.get(mod)


class Edge(NamedTuple):
    src: str
    dst: str
    where: str  # 'arclf/x.py:12', for the messages


def _modules(pkg_dir: Path) -> dict[str, Path]:
    "Module name -> file, for every .py under `pkg_dir` but the generated `_modidx.py`."
    mods = {}
    for path in sorted(pkg_dir.rglob('*.py')):
        if path.name == '_modidx.py' or '__pycache__' in path.parts:
            continue
        parts = path.relative_to(pkg_dir).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        mods['.'.join(parts) or '__init__'] = path
    return mods


def _dotted(name: str) -> str:
    "A dotted path inside the package -> module name ('' is the package itself)."
    return name or '__init__'


def import_edges(pkg_dir: Path) -> list[Edge]:
    "Every import of a module of the package in `pkg_dir` (named `pkg_dir.name`), with its line."
    pkg_dir = Path(pkg_dir)
    pkg = pkg_dir.name
    mods = _modules(pkg_dir)
    edges = []

    def inside(name: str) -> str | None:
        "'arclf.x.y' -> 'x.y', 'arclf' -> '', anything else -> None (`arclfx` is not arclf)."
        if name == pkg:
            return ''
        return name[len(pkg) + 1:] if name.startswith(pkg + '.') else None

    def join(base: str, name: str) -> str:
        return f'{base}.{name}' if base else name

    for src, path in mods.items():
        where = path.relative_to(pkg_dir.parent).as_posix()
        # The package a relative import starts from: a package's __init__ is its own package.
        is_pkg = path.name == '__init__.py'
        here = '' if src == '__init__' else src
        cur_pkg = here if is_pkg else here.rpartition('.')[0]
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                # `import arclf.x.y` loads arclf.x.y; we record the module named, not its parents.
                targets = [t for a in node.names if (t := inside(a.name)) is not None]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    up = cur_pkg.split('.') if cur_pkg else []
                    if node.level - 1 > len(up):
                        raise ValueError(f'{where}:{node.lineno}: relative import leaves {pkg}')
                    base = '.'.join(up[:len(up) - (node.level - 1)])
                    base = join(base, node.module) if node.module else base
                else:
                    base = inside(node.module or '')
                    if base is None:
                        continue
                # `from base import name` imports the submodule base.name when there is one,
                # otherwise a name defined in base.
                for a in node.names:
                    sub = join(base, a.name)
                    targets.append(sub if _dotted(sub) in mods else base)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == 'import_module' and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                # importlib.import_module('arclf.x') with a literal name is an import too.
                t = inside(node.args[0].value)
                targets = [] if t is None else [t]
            for t in dict.fromkeys(targets):
                edges.append(Edge(src, _dotted(t), f'{where}:{node.lineno}'))
    return edges


def import_graph(pkg_dir) -> dict[str, set[str]]:
    "Module -> the package modules it imports; every module of the package is a key."
    graph = {m: set() for m in _modules(Path(pkg_dir))}
    for e in import_edges(Path(pkg_dir)):
        graph[e.src].add(e.dst)
    return graph


def _sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    "Strongly connected components (Tarjan), each sorted."
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _shortest_cycle(graph, start, allowed) -> list[str]:
    "Shortest path start -> ... -> start inside `allowed` (BFS)."
    prev = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]  # walk back v -> ... -> start
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w in allowed and w not in prev:
                prev[w] = v
                queue.append(w)
    return []


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles as chains ['a', 'b', 'a']: for every module on a cycle, the shortest cycle
    through it, without repeats, so every module of every cycle shows up in at least one chain."""
    cycles, seen = [], set()
    for comp in _sccs(graph):
        if len(comp) == 1 and comp[0] not in graph.get(comp[0], ()):
            continue
        for v in comp:
            cyc = _shortest_cycle(graph, v, set(comp))
            body = cyc[:-1]
            i = body.index(min(body))
            key = tuple(body[i:] + body[:i])  # the same cycle read from another module
            if key not in seen:
                seen.add(key)
                cycles.append(list(key) + [key[0]])
    return cycles


def cycle_report(cycles, edges) -> str:
    "The chains, each with the import statements that make it."
    at = {}
    for e in edges:
        at.setdefault((e.src, e.dst), []).append(e.where)
    lines = []
    for c in cycles:
        lines.append(' -> '.join(c))
        lines += [f'    {a} -> {b}: {", ".join(at.get((a, b), []))}' for a, b in zip(c, c[1:])]
    return '\n'.join(lines)


def layer_violations(graph: dict[str, set[str]]) -> list[tuple[str, str | None, str]]:
    """(src, dst, message) for modules missing from the layer map (dst None) and for imports
    that do not point downward."""
    out = []
    for mod in sorted(graph):
        if mod != '__init__' and layer_of(mod) is None:
            out.append((mod, None, f'{mod!r} is not in the layer map: add it to LAYERS in '
                        'tests/test_architecture.py so its place is chosen deliberately'))
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            ls, ld = layer_of(src), layer_of(dst)
            if src == '__init__':
                if ld is not None and ld >= EXPERIMENT_LAYER:
                    out.append((src, dst, f'__init__ -> {dst}: the package __init__ must not '
                                f'import the CLI or experiment modules (layer {ld})'))
                continue
            # Edges to __init__ (`import arclf`) are exempt; a cycle through it is still caught.
            if dst == '__init__' or ls is None or ld is None or src == dst:
                continue
            if ls == ld == EXPERIMENT_LAYER:
                continue
            if ld >= ls:
                out.append((src, dst, f'{src} (layer {ls}) -> {dst} (layer {ld}): '
                            'imports must go downward'))
    return out


def _where(edges, src, dst) -> str:
    "Where src imports dst: 'arclf/x.py:12, arclf/x.py:40'."
    return ', '.join(e.where for e in edges if (e.src, e.dst) == (src, dst))


# ----- the rules, on the real package -----

# Plain cached functions rather than fixtures: pytest prints fixture arguments in full in every
# failure, which would bury the message under the whole graph.
@functools.cache
def _edges() -> list[Edge]:
    return import_edges(PKG_DIR)


@functools.cache
def _graph() -> dict[str, set[str]]:
    return import_graph(PKG_DIR)


def test_imports_resolve():
    graph = _graph()
    mods = set(graph)
    bad = sorted((s, d) for s, ds in graph.items() for d in ds if d not in mods)
    assert not bad, 'imports of arclf modules that do not exist: ' + ', '.join(
        f'{s} -> {d}' for s, d in bad)


def test_no_import_cycles():
    graph, edges = _graph(), _edges()
    cycles = find_cycles(graph)
    assert not cycles, 'import cycles among arclf modules:\n' + cycle_report(cycles, edges)


def test_library_does_not_import_cli():
    graph, edges = _graph(), _edges()
    bad = sorted(s for s, ds in graph.items() if 'cli' in ds and s not in {'cli', '__main__'})
    assert not bad, 'library modules import arclf.cli (only __main__ may):\n' + '\n'.join(
        f'{s} -> cli  ({_where(edges, s, "cli")})' for s in bad)


def test_layers():
    graph, edges = _graph(), _edges()
    bad = layer_violations(graph)
    assert not bad, 'layer map violated:\n' + '\n'.join(
        msg if dst is None else f'{msg}  ({_where(edges, src, dst)})' for src, dst, msg in bad)


def test_scorer_imports_no_model():
    "The scorer must not reach a model module (the layers allow scorer -> randar, this does not)."
    graph, edges = _graph(), _edges()
    # Transitive: scorer -> x -> randar would tie it to the model just the same.
    paths, queue = {'scorer': ['scorer']}, deque(['scorer'])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, ())):
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    bad = [paths[m] for m in sorted(MODEL_MODULES) if m in paths]
    assert not bad, ('arclf.scorer must not import model modules (tokenizer, randar, diffusion), '
                     'directly or through others:\n' + '\n'.join(
                         ' -> '.join(p) + '  (' + '; '.join(_where(edges, a, b)
                                                          for a, b in zip(p, p[1:])) + ')'
                         for p in bad))


# ----- the checker itself, on tiny generated packages -----

def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_import_graph_finds_every_kind_of_import(tmp_path):
    pkg = _write(tmp_path / 'tinypkg', {
        '__init__.py': 'from .core import x\n',
        '_modidx.py': 'from tinypkg.cli import main\n',  # generated index: skipped
        'core.py': 'import os\nimport tinypkgx\nx = 1\n',  # a prefix is not the package
        'data.py': 'from .core import x\n',
        'scorer.py': 'def f():\n    from tinypkg.data import x\n',
        'cli.py': ('class C:\n    def m(self):\n        import tinypkg.scorer\n'
                   'import importlib\nimportlib.import_module("tinypkg.data")\n'),
        'experiments/__init__.py': 'from . import foo\n',
        'experiments/foo.py': ('from ..core import x\nfrom . import bar\n'
                               'from tinypkg import data, x\nimport tinypkg\n'),
        'experiments/bar.py': 'from .foo import *\nfrom tinypkg.experiments import foo\n',
    })
    assert import_graph(pkg) == {
        '__init__': {'core'},
        'core': set(),
        'data': {'core'},
        'scorer': {'data'},
        'cli': {'scorer', 'data'},
        'experiments': {'experiments.foo'},
        'experiments.foo': {'core', 'experiments.bar', 'data', '__init__'},
        'experiments.bar': {'experiments.foo'},
    }


def test_cycle_finder_fails_on_a_cyclic_package(tmp_path):
    pkg = _write(tmp_path / 'cyc', {
        '__init__.py': '',
        'a.py': 'from .b import f\n',
        'b.py': 'def f():\n    from cyc import c\n',
        'c.py': 'import cyc.a\n',
        'd.py': 'from . import d\n',  # importing itself
        'e.py': 'from .a import f\n',  # depends on the cycle, is not on it
    })
    cycles = find_cycles(import_graph(pkg))
    assert cycles == [['a', 'b', 'c', 'a'], ['d', 'd']]
    report = cycle_report(cycles, import_edges(pkg))
    assert 'a -> b -> c -> a' in report and 'cyc/b.py:2' in report
    assert find_cycles({'a': {'b'}, 'b': {'c'}, 'c': set()}) == []


def test_layer_check_fails_on_upward_and_unknown_modules():
    msgs = [m for _, _, m in layer_violations({
        'core': {'scorer'}, 'scorer': {'core'}, 'reproduce': {'wilds', 'cli'},
        'wilds': {'reproduce'}, '__init__': {'core', 'reproduce'}, 'mystery': set(),
    })]
    assert any(m.startswith('core (layer 0) -> scorer (layer 4)') for m in msgs)
    assert any(m.startswith('reproduce (layer 7) -> cli (layer 8)') for m in msgs)
    assert any(m.startswith('__init__ -> reproduce') for m in msgs)
    assert any("'mystery' is not in the layer map" in m for m in msgs)
    assert len(msgs) == 4  # scorer -> core and reproduce <-> wilds are fine


def test_model_modules_hold_models():
    "Model modules define models (blocks, model, presets, loading): no experiment, report, plot, benchmark or CLI code."
    bad_names = ('bench', 'report', 'plot', 'experiment', 'table', 'main', 'evaluate_', 'samples')
    bad_imports = ('argparse', 'matplotlib', 'arclf.scorer', 'arclf.training', 'arclf.cli')
    found = []
    for mod in sorted(MODEL_MODULES):
        tree = ast.parse((PKG_DIR/f'{mod}.py').read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(b in node.name.lower() for b in bad_names):
                found.append(f'{mod}.py:{node.lineno} defines {node.name}')
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                if n.startswith(bad_imports): found.append(f'{mod}.py:{node.lineno} imports {n}')
    assert not found, 'model modules must hold models only:\n' + '\n'.join(found)


def test_readable_lines():
    "Library lines fit in 100 characters (nbdev writes the `__all__` lists) and no `;` joins statements."
    import io
    import tokenize

    long, semi = [], []
    for f in sorted(PKG_DIR.glob('*.py')):
        if f.name == '_modidx.py':
            continue
        src = f.read_text()
        in_all = False
        for i, line in enumerate(src.split('\n'), 1):
            in_all = in_all or line.startswith('__all__')
            if len(line) > 100 and not in_all:
                long.append(f'{f.name}:{i} ({len(line)})')
            if in_all and line.rstrip().endswith(']'):
                in_all = False
        for t in tokenize.generate_tokens(io.StringIO(src).readline):
            if t.type == tokenize.OP and t.string == ';':
                semi.append(f'{f.name}:{t.start[0]}')
    assert not long, f'lines over 100 characters: {long}'
    assert not semi, f'`;`-joined statements: {semi}'


def slow_cells_unguarded(nbs_dir) -> list:
    "`#| slow` cells whose body would run in plain Jupyter: not under `if slow_enabled():`."
    import json

    bad = []
    for f in sorted(Path(nbs_dir).glob('*.ipynb')):
        for i, c in enumerate(json.loads(f.read_text())['cells']):
            src = ''.join(c['source']).split('\n')
            if c['cell_type'] == 'code' and src[0].strip() == '#| slow':
                body = [l for l in src[1:] if l.strip() and not l.startswith('#')]
                if not body or not body[0].startswith('if slow_enabled():') or any(
                        not l.startswith((' ', 'else:', 'if slow_enabled():')) for l in body):
                    bad.append(f'{f.name} cell {i}')
    return bad


def test_slow_cells_are_skipped_in_plain_jupyter(tmp_path):
    """nbdev_test skips `#| slow` cells, Jupyter does not: each one's body must sit under
    `if slow_enabled():` (ARCLF_SLOW=1 runs them)."""
    assert not slow_cells_unguarded(PKG_DIR.parent / 'nbs'), slow_cells_unguarded(PKG_DIR.parent / 'nbs')
    # the check can fail: an unguarded slow cell is found
    nb = {'cells': [{'cell_type': 'code', 'source': ['#| slow\n', "train('all')"]}]}
    (tmp_path / 'x.ipynb').write_text(__import__('json').dumps(nb))
    assert slow_cells_unguarded(tmp_path) == ['x.ipynb cell 0']
