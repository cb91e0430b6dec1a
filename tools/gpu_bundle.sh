#!/usr/bin/env bash
# Prepare what a GPU machine without network needs to run arclf (see tools/gpu_run.sh): the small-scale datasets and
# the one pure-Python package it lacks (fastprogress), in .gpu/ (ignored by git through .gitignore, carried by the device tool).
# Usage, from the repository root:  bash tools/gpu_bundle.sh [DATA_DIR]   (default: $ARCLF_DATA or ../shared/data)
set -euo pipefail
data=${1:-${ARCLF_DATA:-../shared/data}}
[ -d "$data/fashion-mnist" ] || { echo "gpu_bundle: no Fashion-MNIST under $data: pass the data folder" >&2; exit 2; }
grep -qx '/.gpu/' .gitignore || echo '/.gpu/' >> .gitignore     # never committed; the device tool carries it
rm -rf .gpu/data .gpu/whl && mkdir -p .gpu/data .gpu/whl
cp -rL "$data"/fashion-mnist .gpu/data/
for f in "$data"/cifar10* "$data"/cifar-10*; do [ -e "$f" ] && cp -rL "$f" .gpu/data/; done
v=$(python3 -c 'import fastprogress; print(fastprogress.__version__)')
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .gpu/whl "fastprogress==$v"
du -sh .gpu/data .gpu/whl; echo "carry .gpu (limit 64 MiB per call):"; du -sh .gpu
