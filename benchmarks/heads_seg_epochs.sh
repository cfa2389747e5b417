#!/usr/bin/env bash
# The seg head's epochs and learning rate on a finished main job's data, beside random init.
#
# Trains the seg head on the job's `mae` backbone at 12 epochs (lr 1e-3 and 3e-3) and 36 epochs, and on its
# random-init backbone at 36 epochs (600 labelled humans, the job's held-out 240, 128x96), one head at a time
# on 2 threads, for each head seed in SEEDS; then at 36 epochs with the first block's features beside the
# last (`--layers 1,-1`) and alone (`--layers 0`), seed 0. Prints mIoU and boundary F1 per run, and mean ± std
# per setting.
# Needs a finished main job (`bash scripts/main.sh`, or `python tools/main_job.py --out RUN`).
#
#   bash benchmarks/heads_seg_epochs.sh [RUN=runs/main] [OUT=runs/seg_epochs] [SEEDS="0 1 2"]
#
# About 1.5 minutes per 12-epoch head and 4.5 per 36-epoch head on 2 cores: about 55 minutes with three seeds
# (benchmarks/results/heads.md, 2026-12-07 afternoon).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/main}
OUT=${2:-runs/seg_epochs}
SEEDS=${3:-0 1 2}
PY=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE HUMANS_NO_PROGRESS=1 MPLBACKEND=Agg
mkdir -p "$OUT"
head() {  # NAME BACKBONE SEED ARGS...
  local name=$1 backbone=$2 seed=$3; shift 3
  [ -f "$OUT/${name}_s$seed/metrics.json" ] || "$PY" -m humans.heads train --task seg --backbone "$backbone" \
    --data "$RUN/synth_heads" --val-data "$RUN/synth" --out "$OUT/${name}_s$seed" --size 128x96 --threads 2 \
    --device cpu --cache-dir "$RUN/feature_cache" --seed "$seed" "$@" > "$OUT/${name}_s$seed.log" 2>&1
}
for seed in $SEEDS; do
  head mae_e12 "$RUN/backbones/mae_seed0.safetensors" "$seed" --epochs 12
  head mae_e12_lr3e-3 "$RUN/backbones/mae_seed0.safetensors" "$seed" --epochs 12 --lr 3e-3
  head mae_e36 "$RUN/backbones/mae_seed0.safetensors" "$seed" --epochs 36
  head random_e36 "$RUN/backbones/random_seed0.safetensors" "$seed" --epochs 36
done
head mae_e36_layers1,-1 "$RUN/backbones/mae_seed0.safetensors" 0 --epochs 36 --layers=1,-1
head random_e36_layers1,-1 "$RUN/backbones/random_seed0.safetensors" 0 --epochs 36 --layers=1,-1
head mae_e36_layers0 "$RUN/backbones/mae_seed0.safetensors" 0 --epochs 36 --layers=0
head random_e36_layers0 "$RUN/backbones/random_seed0.safetensors" 0 --epochs 36 --layers=0
"$PY" - "$OUT" <<'PY'
import json, statistics, sys
from collections import defaultdict
from pathlib import Path
runs = defaultdict(list)
for f in sorted(Path(sys.argv[1]).glob("*_s[0-9]*/metrics.json")):
    m = json.loads(f.read_text())["metrics"]
    name, seed = f.parent.name.rsplit("_s", 1)
    runs[name].append((m["mIoU"], m["boundary_F1"]))
    print(f"{f.parent.name}: mIoU {m['mIoU']:.4f}, boundary F1 {m['boundary_F1']:.3f}")
for name, vals in runs.items():
    cols = list(zip(*vals))
    sd = lambda c: statistics.stdev(c) if len(c) > 1 else 0.0  # noqa: E731
    print(f"{name} ({len(vals)} seeds): mIoU {statistics.mean(cols[0]):.4f} ± {sd(cols[0]):.4f}, "
          f"boundary F1 {statistics.mean(cols[1]):.3f} ± {sd(cols[1]):.3f}")
PY
