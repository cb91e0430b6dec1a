#!/usr/bin/env bash
# The whole test suite, as CI runs it: the library is what the notebooks export, the README is what the index notebook
# says, every notebook's fast demo runs (`#| slow` cells skipped), and the integration tests (which also build the docs
# site) pass.
set -euo pipefail
cd "$(dirname "$0")/.."
export ARCLF_DATA="${ARCLF_DATA:-$(cd .. && pwd)/shared/data}"
# two workers on two cores: one thread each (more would only contend)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MPLBACKEND=Agg PYTHONWARNINGS=ignore
echo "== library in sync with the notebooks (nbdev_export)"
nbdev_export
if [ -n "$(git status --porcelain -- arclf README.md)" ]; then
  git status --porcelain -- arclf; echo "arclf/ differs from what nbs/ export: run nbdev_export and commit"; exit 1; fi
python tools/make_readme.py --check
echo "== notebook tests (nbdev_test)"
nbdev_test --n_workers 2 --timing
echo "== integration tests (pytest)"
# test files spread over two processes; a file stays in one (its fixtures are built once)
python -m pytest -q -n 2 --dist loadfile tests
