#!/usr/bin/env bash
# Build the documentation site from the notebooks' stored outputs into _docs/.
# With Quarto installed, `nbdev_docs` does the same (and more); Quarto cannot be installed on the project's offline
# machines, so this path processes the notebooks with nbdev and renders them with the pure-Python `smalldocs`.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v quarto >/dev/null 2>&1 && [ "${ARCLF_DOCS_OFFLINE:-0}" != 1 ]; then exec nbdev_docs; fi
nbdev_proc_nbs >/dev/null 2>&1 || nbdev_proc_nbs
(cd _proc && smalldocs render >/dev/null)
rm -rf _docs && mv _proc/_docs _docs
echo "docs: $(ls _docs/*.html | wc -l) pages in _docs/ (open _docs/index.html)"
