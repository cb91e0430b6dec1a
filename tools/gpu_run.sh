#!/usr/bin/env bash
# Run on a GPU machine over a copy of this repository with .gpu/ carried (made by tools/gpu_bundle.sh); results go to
# $OUT (or ./gpu_out). Usage:
#   bash tools/gpu_run.sh reproduce fashion_mnist   # the gpu plan (or $PLAN) for one dataset: one call each
#   bash tools/gpu_run.sh bench                     # training throughput (small and full presets) + scorer bench
#   bash tools/gpu_run.sh test                      # the GPU-only checks: bf16, compile, CUDA scorer vs CPU
set -euo pipefail
out=${OUT:-gpu_out}; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD:/tmp/site" ARCLF_DATA="$PWD/.gpu/data" ARCLF_CACHE=/tmp/arclf-cache PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU found") | tee "$out/gpu.txt"
case "${1:-}" in
  reproduce)
    # results/reproduce/<plan>/results.json travels with the repository: copy what a call returns back into the
    # checkout before the next call, and the next dataset's results are merged into it.
    plan=${PLAN:-gpu}; name=$(python3 -c "from arclf.reproduce import load_plan; print(load_plan('$plan')['name'])")
    set -o pipefail
    python3 -m arclf.cli reproduce --plan "$plan" --datasets "${2:?name a dataset}" --out results/reproduce --runs .gpu/runs 2>&1 | tee "$out/reproduce_$2.log"
    mkdir -p "$out/results/reproduce" && cp -r "results/reproduce/$name" "$out/results/reproduce/" ;;
  bench)
    python3 -m arclf.cli bench training --full --device cuda --out "$out/results/training/bench_cuda.json"
    python3 -m arclf.cli bench scorer --device cuda --out "$out/results/scorer/bench_cuda.json" ;;
  test)
    python3 -m pytest -q tests/test_gpu.py 2>&1 | tee "$out/test.log" ;;
  *) echo "usage: bash tools/gpu_run.sh reproduce <dataset> | bench | test" >&2; exit 2 ;;
esac
