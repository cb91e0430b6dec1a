#!/usr/bin/env bash
# Prepare what a GPU machine without network needs to run arclf (see tools/gpu_run.sh): the small-scale datasets and
# the one pure-Python package it lacks (fastprogress; arclf imports no fastcore or nbdev, and the GPU image has the
# rest), in .gpu/ (ignored by git through .gitignore, carried by the device tool).
# Usage, from the repository root:
#   bash tools/gpu_bundle.sh [DATA_DIR]   # wheels and data (default DATA_DIR: $ARCLF_DATA or ../shared/data)
#   bash tools/gpu_bundle.sh --no-data    # wheels only: enough for `gpu_run.sh bench` and `gpu_run.sh test`
# A device call carries at most 64 MiB (the repository's files and .gpu together): the end says what would travel.
set -euo pipefail
if [ "${1:-}" = --no-data ]; then data=; else
  data=${1:-${ARCLF_DATA:-../shared/data}}
  [ -d "$data/fashion-mnist" ] || { echo "gpu_bundle: no Fashion-MNIST under $data: pass the data folder" >&2; exit 2; }
fi
grep -qx '/.gpu/' .gitignore || echo '/.gpu/' >> .gitignore     # never committed; the device tool carries it
rm -rf .gpu/data .gpu/whl && mkdir -p .gpu/data .gpu/whl
if [ -n "$data" ]; then
  cp -rL "$data"/fashion-mnist .gpu/data/
  for f in "$data"/cifar10* "$data"/cifar-10*; do [ -e "$f" ] && cp -rL "$f" .gpu/data/; done
fi
v=$(python3 -c 'import fastprogress; print(fastprogress.__version__)')
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .gpu/whl "fastprogress==$v"
du -sh .gpu/data .gpu/whl
# what a call sends: tracked and untracked-not-ignored files, plus .gpu when carried
repo=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | xargs -0 -r du -cb 2>/dev/null | awk '/total$/ {s += $1} END {print s + 0}')
gpu=$(du -sb .gpu | cut -f1)
mib=$(( (repo + gpu) / 1048576 ))
echo "carry .gpu: the call sends about ${mib} MiB (repository $((repo / 1048576)) MiB + .gpu $((gpu / 1048576)) MiB; limit 64)"
[ "$mib" -lt 64 ] || echo "gpu_bundle: over the 64 MiB a call carries: bundle less data (--no-data for bench and test)" >&2
