#!/usr/bin/env bash
# Run on a GPU machine over a copy of this repository with .gpu/ carried (made by tools/gpu_bundle.sh); results go to
# $OUT (or ./gpu_out). Usage:
#   bash tools/gpu_run.sh reproduce fashion_mnist   # the gpu plan (or $PLAN) for one dataset: one call each
#   bash tools/gpu_run.sh bench                     # scorer at full shapes (bf16), training, fp32 and compile variants
#   bash tools/gpu_run.sh test                      # the GPU-only checks: bf16, compile, CUDA scorer vs CPU
#   bash tools/gpu_run.sh study fashion_mnist       # the small-scale study (notebook 09a): four models trained side
#                                                   # by side to convergence or $ARCLF_STUDY_BUDGET s (default 480)
#   ARCLF_STUDY_TINY=1 bash tools/gpu_run.sh study fashion_mnist  # its dry run here, at a tiny size, in a minute
#   ARCLF_BENCH_TINY=1 bash tools/gpu_run.sh bench  # dry run of the bench steps at a tiny shape, here, in a minute
# bench fits one device call: about 4-6 minutes on an H200 (model builds, warm-ups and the timed calls), held under
# $ARCLF_BENCH_BUDGET seconds (default 450) by `timeout`; each step writes its own JSON, so a step cut short loses only
# itself. What comes back from $OUT is at most 8 files: bench.log and the 7 result files below.
set -euo pipefail
out=${OUT:-gpu_out}; mkdir -p "$out"
py=${PYTHON:-python3}
tiny=${ARCLF_BENCH_TINY:-}
[ "${1:-}" = study ] && tiny=${ARCLF_STUDY_TINY:-}
if [ -n "$tiny" ]; then
  # the dry run uses this machine's Python and packages as they are: nothing is installed
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
else
  ls .gpu/whl/*.whl >/dev/null 2>&1 || { echo "gpu_run: no .gpu/whl: run bash tools/gpu_bundle.sh here first" >&2; exit 2; }
  site=$(mktemp -d /tmp/arclf-site.XXXXXX)  # this run's own: nothing else installs into it or removes it
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .gpu/whl/*.whl
  export PYTHONPATH="$PWD:$site" ARCLF_DATA="$PWD/.gpu/data" ARCLF_CACHE=/tmp/arclf-cache PYTHONUNBUFFERED=1
fi
gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU found")
case "${1:-}" in
  reproduce)
    echo "$gpu" | tee "$out/gpu.txt"
    # results/reproduce/<plan>/results.json travels with the repository: copy what a call returns back into the
    # checkout before the next call, and the next dataset's results are merged into it.
    plan=${PLAN:-gpu}; name=$($py -c "from arclf.reproduce import load_plan; print(load_plan('$plan')['name'])")
    set -o pipefail
    $py -m arclf.cli reproduce --plan "$plan" --datasets "${2:?name a dataset}" --out results/reproduce --runs .gpu/runs 2>&1 | tee "$out/reproduce_$2.log"
    mkdir -p "$out/results/reproduce" && cp -r "results/reproduce/$name" "$out/results/reproduce/" ;;
  bench)
    budget=${ARCLF_BENCH_BUDGET:-450}
    if [ -n "$tiny" ]; then  # CPU or GPU, whatever is here; the compile step only on CUDA (inductor on a CPU: minutes)
      tag=tiny; sc=(--shape tiny --reps 1); all=(--models randar_l,dit_xl2); tr=()  # the ratio's two
    else
      tag=cuda; sc=(--shape full --device cuda); all=(); tr=(--full --device cuda)
    fi
    s="$out/results/scorer"
    # step NEED CMD...: run CMD under the time left of the budget, if at least NEED seconds are left
    step() {
      local need=$1 left=$((budget - SECONDS)); shift
      if [ "$left" -lt "$need" ]; then echo "== skipped, ${left}s of the budget left: $*"; return; fi
      echo "== $* (${left}s left)"
      timeout "$left" "$@" || echo "== failed or out of time (exit $?): $*"
    }
    {
      echo "GPU: $gpu"
      # 1. what the issue asks for: the four classifiers at full shapes in bf16, three chunk sizes (~1.5 min)
      step 60 $py -m arclf.cli bench scorer "${sc[@]}" "${all[@]}" --chunks 64,256,auto --out "$s/bench_$tag.json"
      # 2. training throughput of the small and the full presets (~1 min)
      step 60 $py -m arclf.cli bench training "${tr[@]}" --out "$out/results/training/bench_$tag.json"
      # 3. fp32 against bf16, for the two models of the speed ratio (~1 min)
      step 60 $py -m arclf.cli bench scorer "${sc[@]}" --models randar_l,dit_xl2 --dtype fp32 \
        --out "$s/bench_${tag}_fp32.json"
      # 4. torch.compile, with what is left (compilation: a minute or two per model)
      if [ -z "$tiny" ] || $py -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
        step 120 $py -m arclf.cli bench scorer "${sc[@]}" --models randar_l,dit_xl2 --compile \
          --out "$s/bench_${tag}_compile.json"
      else
        echo "== skipped in the dry run on a CPU: --compile"
      fi
      echo "== bench done in ${SECONDS}s; results under $out/results"
    } 2>&1 | tee "$out/bench.log"
    ! grep -q '^== failed' "$out/bench.log" ;;  # the exit status says whether every step that ran succeeded
  study)
    # the same recipe and curves as the CPU study (arclf.study.RECIPE), for longer: the four models share the GPU (they
    # are small: one alone leaves it idle), each stops when converged (tol 1 point) or at the budget, and resumes
    # from its checkpoint in a later call if $STUDY_RUNS is kept
    ds=${2:?name a dataset}; budget=${ARCLF_STUDY_BUDGET:-480}; runs=${STUDY_RUNS:-.gpu/study}
    extra=(); dev=()
    if [ -n "$tiny" ]; then
      extra=(--n-train 128 --n-valid 32 --bs 32 --epochs 2 --curve-first 2 --curve-images 16 --log-every 0)
    else
      dev=(--device cuda)
    fi
    echo "GPU: $gpu" | tee "$out/study_$ds.log"
    for m in randar randar_raster dit sit; do
      few=()  # the dry run scores its diffusion curves with 2 timesteps, not the study's 8: a CPU minute
      [ -n "$tiny" ] && [[ $m = dit || $m = sit ]] && few=(--curve-n 2)
      timeout "$budget" $py -m arclf.cli study train $m --dataset "$ds" --runs "$runs" "${dev[@]}" \
        "${extra[@]}" "${few[@]}" > "$out/study_${ds}_$m.log" 2>&1 &
    done
    wait || true  # a run cut at the budget keeps its curve and checkpoint
    $py -m arclf.cli study report "$runs/$ds" --out "$out/results/training/$ds" --dataset "$ds" 2>&1 \
      | tee -a "$out/study_$ds.log"
    mkdir -p "$out/runs/$ds" && cp "$runs/$ds"/*.json "$runs/$ds"/*.pt "$out/runs/$ds/" ;;
  test)
    echo "$gpu" | tee "$out/gpu.txt"
    $py -m pytest -q tests/test_gpu.py 2>&1 | tee "$out/test.log" ;;
  *) echo "usage: bash tools/gpu_run.sh reproduce <dataset> | bench | test | study <dataset>" >&2; exit 2 ;;
esac
