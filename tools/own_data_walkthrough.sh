#!/usr/bin/env bash
# The README's "Your own images" walkthrough, end to end, offline: an example folder of three
# Fashion-MNIST classes that look alike (Pullover, Coat, Shirt; 1,500 training and 334 test images
# each, from the full dataset where it is on disk ($ARCLF_DATA, arclf's cache), else 80 + 20 of the
# images shipped with arclf), then every command of the walkthrough, reading nothing but that
# folder. Results go to results/own_data/ (models to a scratch folder).
#   bash tools/own_data_walkthrough.sh [work folder, default: a new temporary one]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
out="$repo/results/own_data"
mkdir -p "$work" "$out"
cd "$work"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" MPLBACKEND=Agg
python "$repo/tools/example_folder.py" my_images  # (reads the dataset where arclf data finds it)
unset ARCLF_DATA  # from here on, only the folder
export ARCLF_CACHE="$work/cache"
arclf train tokenizer --data my_images --epochs 20 --bs 64
arclf train randar --data my_images --epochs 30 --bs 64 --log-every 0
arclf train randar --data my_images --order raster --epochs 30 --bs 64 --log-every 0
arclf train dit --data my_images --epochs 30 --bs 64 --log-every 0
arclf train sit --data my_images --epochs 30 --bs 64 --log-every 0
arclf eval --model runs/my_images/sit_fmnist.pt --data my_images --n 25 --n-per-class 0 \
  --out "$out/eval_sit.json"
arclf demo --data my_images --n-per-class 0 --ks 1,5,10 --dit-ns 5,25 --out "$out/demo"
echo "models in $work/runs/my_images, results in $out"
