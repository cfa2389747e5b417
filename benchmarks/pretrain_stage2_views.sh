#!/usr/bin/env bash
# Does a second pretraining stage at the heads' scale help the heads? Continues a finished backbone run
# (`--init`, fresh optimizer and schedule) for STEPS steps at 128-px global views (a 16x16 token grid, near the
# heads' 16x12 at 128x96 input) and, as the control, the same steps at the first stage's 64-px views (8x8),
# on the main job's shards plus 4000 unlabelled synthetic humans rendered at 128 px; then trains the seg,
# normal and pose heads on both at 128x96 (600 labelled humans, the job's held-out 240, 12 epochs, head seeds
# SEEDS). The 256x192 heads of the same backbones: `SEED=S VARIANTS=0 bash benchmarks/heads_token_grid.sh
# OUT/stage2_g128.safetensors RUN OUT/grid`. Needs a finished main job and a first-stage run (SOURCE, e.g. the
# `mae2000` run of benchmarks/heads_pretrain_length.sh).
#
#   bash benchmarks/pretrain_stage2_views.sh SOURCE [RUN=runs/main] [OUT=runs/stage2_views] [STEPS=1000] [SEEDS="0 1 2"]
#
# Measured on 2 cores (AMD EPYC, 2026-12-07): 128-px views 32 images/s (1000 steps of 32: 17 min), 64-px views
# 116 images/s (5 min), 1-2 minutes per head; results in benchmarks/results/heads.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=$1
RUN=${2:-runs/main}
OUT=${3:-runs/stage2_views}
STEPS=${4:-1000}
SEEDS=${5:-0 1 2}
PY=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE HUMANS_NO_PROGRESS=1 MPLBACKEND=Agg
mkdir -p "$OUT"
"$PY" -m humans.shared.synth --out "$OUT/unlabelled128" --count 4000 --size 128 --seed 1000 --images-only \
  --threads 2 --no-progress
for views in 128 64; do
  [ -f "$OUT/stage2_g$views.safetensors" ] && continue
  "$PY" -m humans.pretrain train --model study-s8 --shards "$RUN/shards,$OUT/unlabelled128" --objective mae \
    --init "$SOURCE" --steps "$STEPS" --batch-size 32 --global-size "$views" --local-size 32 --n-local 2 \
    --prototypes 1024 --seed 1 --threads 2 --device cpu --out "$OUT/stage2_g$views" --resume --warmup-steps 50 \
    --lr 1e-3 --num-workers 1
  "$PY" -m humans.pretrain export "$OUT/stage2_g$views" --out "$OUT/stage2_g$views.safetensors"
done
for seed in $SEEDS; do
  for task in seg normal pose; do
    for views in 128 64; do
      dir="$OUT/${task}_g${views}_s$seed"
      [ -f "$dir/head.safetensors" ] && continue
      "$PY" -m humans.heads train --task "$task" --backbone "$OUT/stage2_g$views.safetensors" --data "$RUN/synth_heads" \
        --val-data "$RUN/synth" --out "$dir" --epochs 12 --size 128x96 --threads 2 --device cpu \
        --cache-dir "$OUT/cache" --seed "$seed" > "$dir.log" 2>&1
    done
  done
done
grep -H '"mIoU"\|"boundary_F1"\|"mean_deg"\|"grad_ratio"\|"PCK@0.1"' "$OUT"/*_s*/metrics.json || true
