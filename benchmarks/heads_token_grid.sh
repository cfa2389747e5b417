#!/usr/bin/env bash
# Finer token grid for the heads: the seg and normal heads (and, with the variants, pose) at 256x192 input
# (a 32x24 grid of 8-px tokens) on 256-px renders of the same synthetic humans the main job's heads see at
# 128 px (16x12 tokens), on a pretrained backbone beside the random-init one; the 128x96 heads of
# benchmarks/heads_pretrain_length.sh are evaluated on the same 256-px held-out truth, so every figure is
# scored against the same labels.
#
#   [SEED=0] [VARIANTS=1] bash benchmarks/heads_token_grid.sh BACKBONE [RUN=runs/main] [OUT=runs/heads_token_grid] \
#       [COUNT=600] [SMALL=]
#
# BACKBONE: the pretrained backbone (the 2000-step `mae` of benchmarks/heads_pretrain_length.sh); RUN: a finished
# main job (its random-init backbone); COUNT: labelled humans to train on (generator seed 2000, as the job's
# synth_heads; the held-out 240 are the job's synth set, default seed); SMALL: a folder holding 128x96 heads
# SMALL/TASK_mae2000_s0 and SMALL/TASK_random_s0 (heads_pretrain_length.sh's OUT) to evaluate on the 256-px
# truth. Two lanes side by side, one thread each. The variants (dense_stride 2, features of blocks 2, 4, 6,
# pose) run unless VARIANTS=0 (the 2400-image run: `VARIANTS=0 bash ... BACKBONE runs/main OUT2 2400`; the
# second head seed: `SEED=1 VARIANTS=0 bash ...`, run folders TASK_ARM_s1). Measured on 2 cores (AMD EPYC,
# 2026-12-07): 6-10 minutes per head at 256x192 and 600 images (about 1 minute at 128x96), 21-39 minutes at
# 2400 images, 18 minutes per pose head; results in benchmarks/results/heads.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKBONE=$1
RUN=${2:-runs/main}
OUT=${3:-runs/heads_token_grid}
COUNT=${4:-600}
SMALL=${5:-}
SEED=${SEED:-0}
SUFFIX=$([ "$SEED" = 0 ] || echo "_s$SEED")
PY=${PYTHON:-.venv/bin/python}
RANDOM_BACKBONE=$RUN/backbones/random_seed0.safetensors
export OMP_WAIT_POLICY=PASSIVE HUMANS_NO_PROGRESS=1 MPLBACKEND=Agg
mkdir -p "$OUT"
"$PY" -m humans.shared.synth --out "$OUT/heldout256" --count 240 --size 256 --threads 2 --no-progress
"$PY" -m humans.shared.synth --out "$OUT/train256" --count "$COUNT" --size 256 --seed 2000 --threads 2 --no-progress
train_head() {  # TASK NAME CHECKPOINT [EXTRA ARGS...]
  local task=$1 dir="$OUT/$1_$2$SUFFIX" ckpt=$3
  shift 3
  [ -f "$dir/head.safetensors" ] && return 0
  "$PY" -m humans.heads train --task "$task" --backbone "$ckpt" --data "$OUT/train256" --val-data "$OUT/heldout256" \
    --out "$dir" --epochs 12 --size 256x192 --threads 1 --device cpu --cache-dir "$OUT/cache" --seed "$SEED" "$@" \
    > "$dir.log" 2>&1
}
{ train_head seg pretrained "$BACKBONE" && train_head normal random "$RANDOM_BACKBONE"; } &
lane1=$!
{ train_head seg random "$RANDOM_BACKBONE" && train_head normal pretrained "$BACKBONE"; } &
lane2=$!
wait $lane1
wait $lane2
if [ "${VARIANTS:-1}" = 1 ]; then
  train_head seg pretrained_ds2 "$BACKBONE" --set dense_stride=2 &
  lane1=$!
  train_head normal pretrained_ds2 "$BACKBONE" --set dense_stride=2 &
  lane2=$!
  wait $lane1
  wait $lane2
  train_head seg pretrained_L135 "$BACKBONE" --layers 1,3,5 &
  lane1=$!
  train_head normal pretrained_L135 "$BACKBONE" --layers 1,3,5 &
  lane2=$!
  wait $lane1
  wait $lane2
  # pose on 256x192 person crops of the same renders
  train_head pose pretrained "$BACKBONE" &
  lane1=$!
  train_head pose random "$RANDOM_BACKBONE" &
  lane2=$!
  wait $lane1
  wait $lane2
fi
if [ -n "$SMALL" ]; then   # the 128x96 heads, scored on the 256-px held-out truth
  for run in "$SMALL"/{pose,seg,normal}_{mae2000,random}_s0; do
    "$PY" -m humans.heads eval --task "$(basename "$run" | cut -d_ -f1)" --checkpoint "$run/head.safetensors" \
      --data "$OUT/heldout256" --out "$run/eval256.json" --threads 2 --cache-dir "$OUT/cache128" \
      > "$run.eval256.log" 2>&1
  done
fi
grep -H '"mIoU"\|"mean_deg"\|"PCK@0.1"' "$OUT"/*/metrics.json ${SMALL:+"$SMALL"/*/eval256.json} || true
