#!/usr/bin/env bash
# Heads and probes on a longer-pretrained backbone, beside the main job's random-init and 200-step MAE ones.
#
# Pretrains the main job's `mae` arm (study-s8, same data, views and learning rate) for STEPS steps, then
# trains every head on it and on the job's random-init backbone (600 labelled humans, the job's held-out 240,
# 12 epochs, 128x96, head seeds given by SEEDS) and runs the linear probes of all three backbones.
# Needs a finished main job (`bash scripts/main.sh`, or `python tools/main_job.py --out RUN`).
#
#   bash benchmarks/heads_pretrain_length.sh [RUN=runs/main] [OUT=runs/pretrain_length] [STEPS=2000] [SEEDS="0 1 2"]
#
# About 10 minutes of pretraining per 2000 steps and 1-2 minutes per head on 2 cores; each head's metrics are
# in OUT/TASK_ARM_sSEED/metrics.json, the probe table in OUT/probe.md (benchmarks/results/heads.md).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/main}
OUT=${2:-runs/pretrain_length}
STEPS=${3:-2000}
SEEDS=${4:-0 1 2}
PY=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE HUMANS_NO_PROGRESS=1 MPLBACKEND=Agg
mkdir -p "$OUT"
MAE="$OUT/mae$STEPS.safetensors"
RANDOM_INIT="$RUN/backbones/random_seed0.safetensors"
if [ ! -f "$MAE" ]; then
  "$PY" -m humans.pretrain train --model study-s8 --shards "$RUN/shards,$RUN/unlabelled" --objective mae \
    --steps "$STEPS" --batch-size 32 --global-size 64 --local-size 32 --n-local 2 --prototypes 1024 --seed 0 \
    --threads 2 --device cpu --out "$OUT/mae$STEPS" --resume --warmup-steps 100 --lr 2e-3 --num-workers 1
  "$PY" -m humans.pretrain export "$OUT/mae$STEPS" --out "$MAE"
fi
for seed in $SEEDS; do
  for task in pose seg normal pointmap albedo; do
    for arm in "mae$STEPS=$MAE" "random=$RANDOM_INIT"; do
      dir="$OUT/${task}_${arm%%=*}_s$seed"
      [ -f "$dir/head.safetensors" ] && continue
      "$PY" -m humans.heads train --task "$task" --backbone "${arm#*=}" --data "$RUN/synth_heads" \
        --val-data "$RUN/synth" --out "$dir" --epochs 12 --size 128x96 --threads 2 --device cpu \
        --cache-dir "$OUT/cache" --seed "$seed"
    done
  done
done
"$PY" -m humans.heads probe --backbone "random=$RANDOM_INIT" --backbone "mae=$RUN/backbones/mae_seed0.safetensors" \
  --backbone "mae$STEPS=$MAE" --data "$RUN/synth" --size 128x96 --pose-size 64x48 --seed 0 --threads 2 \
  --device cpu --json "$OUT/probe.json" --write-results "$OUT/probe.md" --cache-dir "$OUT/probe_cache"
