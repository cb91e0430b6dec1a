#!/usr/bin/env python
"""Line statistics of the arclf library (arclf/*.py and subpackages, not the generated _modidx.py).

    python tools/line_stats.py                  # a short report
    python tools/line_stats.py --json           # the same as JSON
    python tools/line_stats.py --max-share 5    # exit 1 when over 5% of all lines exceed 100 chars

Lengths are in characters (not bytes) without the line ending. `;` is counted with `tokenize`, so
a ';' inside a string or a comment is not a statement separator and is not counted.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 100
TOP = 10


def library_files(pkg_dir: Path) -> list[Path]:
    "Every .py of the package and its subpackages, but the generated index."
    return sorted(p for p in pkg_dir.rglob('*.py')
                  if p.name != '_modidx.py' and '__pycache__' not in p.parts)


def semicolons(text: str, name: str) -> int | None:
    "Number of ';' OP tokens; None (with a warning) when the file does not tokenize."
    try:
        toks = tokenize.generate_tokens(io.StringIO(text).readline)
        return sum(t.type == tokenize.OP and t.string == ';' for t in toks)
    except (tokenize.TokenError, SyntaxError) as e:
        # A broken file should not hide the line counts of the others.
        print(f'warning: {name}: cannot tokenize ({e}); its ";" are not counted', file=sys.stderr)
        return None


def file_lines(text: str) -> list[str]:
    "The lines without their endings; a final newline does not start another line."
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return [line.rstrip('\r') for line in lines]


def share(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def stats(pkg_dir: Path) -> dict:
    files, longest = {}, []
    for path in library_files(pkg_dir):
        name = path.relative_to(pkg_dir.parent).as_posix()
        text = path.read_text(encoding='utf-8')
        lines = file_lines(text)
        files[name] = dict(
            lines=len(lines),
            nonblank=sum(bool(line.strip()) for line in lines),
            over=sum(len(line) > LIMIT for line in lines),
            semicolons=semicolons(text, name),
        )
        longest += [(len(line), name, i) for i, line in enumerate(lines, 1)]
    # Longest first; ties in file and line order, so the output is stable.
    longest.sort(key=lambda t: (-t[0], t[1], t[2]))
    total = {k: sum(f[k] or 0 for f in files.values())
             for k in ('lines', 'nonblank', 'over', 'semicolons')}
    top = [dict(file=f, line=i, length=n) for n, f, i in longest[:TOP]]
    return dict(
        package=pkg_dir.name,
        limit=LIMIT,
        files_counted=len(files),
        **total,
        over_share_of_lines=share(total['over'], total['lines']),
        over_share_of_nonblank=share(total['over'], total['nonblank']),
        longest=top[0] if top else None,
        top=top,
        per_file=files,
    )


def report(s: dict) -> str:
    out = [
        f"{s['package']}: {s['files_counted']} files (without _modidx.py)",
        f"lines:                 {s['lines']}",
        f"non-blank lines:       {s['nonblank']}",
        f"lines over {s['limit']} chars:  {s['over']}  "
        f"({s['over_share_of_lines']}% of all lines, "
        f"{s['over_share_of_nonblank']}% of non-blank lines)",
        f"';' separators:        {s['semicolons']}",
    ]
    if s['longest']:
        lg = s['longest']
        out.append(f"longest line:          {lg['length']} chars at {lg['file']}:{lg['line']}")
    out.append(f"top {len(s['top'])} longest lines (file:line:length):")
    out += [f"  {t['file']}:{t['line']}:{t['length']}" for t in s['top']]
    w = max((len(name) for name in s['per_file']), default=4)
    out.append(f"per file:\n  {'file':<{w}} {'lines':>6} {'non-blank':>9} {'over':>5} {';':>4}")
    for name, f in s['per_file'].items():
        semi = '?' if f['semicolons'] is None else f['semicolons']
        out.append(f"  {name:<{w}} {f['lines']:>6} {f['nonblank']:>9} {f['over']:>5} {semi:>4}")
    return '\n'.join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--json', action='store_true', help='print the statistics as JSON')
    p.add_argument('--max-share', type=float, metavar='X',
                   help=f'exit 1 when more than X%% of all lines are over {LIMIT} characters')
    p.add_argument('--pkg', type=Path, default=ROOT / 'arclf', help='package folder (%(default)s)')
    a = p.parse_args(argv)
    if not a.pkg.is_dir():
        p.error(f'no package folder at {a.pkg}')
    s = stats(a.pkg)
    print(json.dumps(s, indent=2) if a.json else report(s))
    # The exact share, not the rounded one shown, decides.
    exact = 100 * s['over'] / s['lines'] if s['lines'] else 0.0
    if a.max_share is not None and exact > a.max_share:
        # On stderr, so that --json output stays parseable in CI.
        print(f"FAIL: {s['over_share_of_lines']}% of lines are over {LIMIT} characters "
              f"(allowed: {a.max_share}%)", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
