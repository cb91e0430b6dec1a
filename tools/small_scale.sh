#!/usr/bin/env bash
# Re-make the small-scale results from the shipped models, in order, after `arclf study ship` has replaced them.
# Every step keeps its finished evaluations (and trained variants) under runs/, so a run stopped with its session
# resumes where it stopped. Pick steps with STEPS="demo orders"; default all, in the order below.
#   bash tools/small_scale.sh                  # everything (about 12 hours on 2 cores, and the CIFAR-10 study)
#   STEPS=reproduce bash tools/small_scale.sh  # one step
# Then re-render the notebooks that show the results (07, 07b, 09, 09a, 10, index) and the README (tools/make_readme.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export ARCLF_DATA="${ARCLF_DATA:-$(cd .. && pwd)/shared/data}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MPLBACKEND=Agg PYTHONWARNINGS=ignore
steps=${STEPS:-demo orders prefix reproduce ablations fig8 diffusion cifar10 findings}
run() { echo "== $(date -u +%H:%M:%S) $*"; "$@"; }
for s in $steps; do
  case $s in
    demo)                                       # all 1,000 carried images, ~20 min; both threads, as
      OMP_NUM_THREADS=2 run arclf demo --n-per-class 100 ;;   # a user's `arclf demo` would use
    orders) run arclf orders --threads 2 ;;                   # Tables 1, 5, Figs. 3-5, 8 on 1,000 images
    prefix) run arclf prefix --threads 2 ;;                   # prefix pruning (beyond the paper), 1,000 images
    reproduce)                                                # Table 2 and Fig. 6 on 1,000 images, 2 processes
      run torchrun --standalone --nproc_per_node 2 -m arclf.cli reproduce --plan cpu --datasets fashion_mnist ;;
    ablations)                                  # Tables 3, 4, 5: 4 variants trained 2 epochs, 2 processes
      run torchrun --standalone --nproc_per_node 2 -m arclf.cli ablations --threads 1 ;;
    fig8)                                       # Fig. 8 with both tokenizers: the ablations' base and vq_l, 1,000 images
      run python -c "from arclf.ablations import fig8_tokenizers; fig8_tokenizers()" ;;
    fmnist-study)                               # the Fashion-MNIST DiT and SiT, on from their checkpoints (not in the
      # default steps): each stops when converged, at the recipe's cap (64 epochs), or where you stop it (SIGTERM; it
      # resumes exactly, about 1 s a step with both at once); then the report, which keeps the AR models' curves of the
      # earlier runs (--carry)
      pids=""
      for m in dit sit; do
        run arclf study train "$m" --log-every 100 &
        pids="$pids $!"
      done
      ok=1
      for p in $pids; do wait "$p" || ok=0; done
      [ "$ok" = 1 ] || { echo "small_scale.sh: a Fashion-MNIST study run failed" >&2; exit 1; }
      run arclf study report runs/study/fashion_mnist --out results/training/fashion_mnist --carry ;;
    ship-fmnist)                                # ship the Fashion-MNIST DiT and SiT at their curves' end (not in the
      # default steps). First the cpu reproduction made with the 8-epoch ones, the training of RandAR, is kept as
      # results/reproduce/cpu_8_epochs (the equal-training comparison; the findings read it as its own run). Then
      # re-make what their weights feed: STEPS="demo reproduce diffusion findings" (about 3 hours on 2 cores)
      [ -e results/reproduce/cpu_8_epochs ] || run python -c "from arclf.reproduce import keep_run; keep_run(
        'results/reproduce/cpu', 'results/reproduce/cpu_8_epochs', ['fashion_mnist'], 'DiT and SiT at 8 epochs, '
        'the training of RandAR: the comparison at equal training', ['randar', 'dit', 'sit'], True)"
      run arclf study ship runs/study/fashion_mnist --models dit,sit ;;
    diffusion)                                  # Tables 7, 8, Fig. 6 (RandAR vs DiT/SiT), the diagnosis, 1,000 images
      for k in dit sit; do
        run arclf diffusion eval --kind $k --n-per-class 100 --n 32 --threads 2
        run arclf diffusion table7 --kind $k --n-per-class 100 --budget 8 --threads 2
      done
      # RandAR on the same images, so that `report` times the three side by side (Fig. 6)
      run arclf diffusion eval --kind randar --n-per-class 100 --n 16 --threads 2
      run arclf diffusion report
      run arclf diffusion diagnose ;;
    cifar10)                                    # the study on CIFAR-10, then its Table 2 and Fig. 6 (1,000 images)
      # two runs at a time, one thread each; a run stops at convergence, or where you stop it (it resumes exactly:
      # the committed curves stopped after their 5th point, 928 steps, for one session's budget)
      for pair in "randar dit" "randar_raster sit"; do
        pids=""
        for m in $pair; do
          run arclf study train "$m" --dataset cifar10 --log-every 50 &
          pids="$pids $!"
        done
        ok=1
        for p in $pids; do wait "$p" || ok=0; done            # both end before a failure stops the script
        [ "$ok" = 1 ] || { echo "small_scale.sh: a CIFAR-10 study run failed" >&2; exit 1; }
      done
      run arclf study report runs/study/cifar10 --out results/training/cifar10 --dataset cifar10
      run torchrun --standalone --nproc_per_node 2 -m arclf.cli reproduce --plan cpu --datasets cifar10 ;;
    recover-hits)                               # per-image hits for runs made before arclf kept them (not in the
      # default steps), so that their speed ratios get intervals: each model is scored again as the run scored it,
      # and every accuracy must come out as stored. cpu_8_epochs scored the 8-epoch DiT and SiT shipped at f181530
      # (read from git history, checked by digest); cpu's trained VAR, ViT and ResNet are not committed: no hits
      w=$(mktemp -d)
      for m in dit sit; do git show "f181530:arclf/weights/${m}_fmnist.pt" > "$w/${m}_fmnist.pt"; done
      run torchrun --standalone --nproc_per_node 2 -m arclf.cli reproduce \
        --recover-hits results/reproduce/cpu_8_epochs --weights "dit=$w/dit_fmnist.pt,sit=$w/sit_fmnist.pt"
      run torchrun --standalone --nproc_per_node 2 -m arclf.cli reproduce --recover-hits results/reproduce/cpu ;;
    findings) run arclf study findings ;;
    *) echo "small_scale.sh: unknown step $s (demo orders prefix reproduce ablations fig8 fmnist-study" \
         "ship-fmnist diffusion cifar10 recover-hits findings)" >&2
       exit 2 ;;
  esac
done
