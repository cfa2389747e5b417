#!/usr/bin/env bash
# Sharp heads: the seg and normal heads on a longer-pretrained backbone and 9600 labelled humans, beside the
# random-init backbone, in two lanes side by side (one thread each; see `--lanes` of tools/main_job.py).
#
#   bash benchmarks/heads_sharp.sh BACKBONE DATA [RUN=runs/main] [OUT=runs/heads_sharp]
#
# BACKBONE: the pretrained backbone (e.g. the 2000-step `mae` of benchmarks/heads_pretrain_length.sh);
# DATA: labelled synthetic humans to train on (`python -m humans.shared.synth --out DATA --count 9600 --size 128
# --seed 2000`: its first 600 are the main job's synth_heads); RUN: a finished main job (its random-init
# backbone and its held-out set RUN/synth). Lane 1: seg on BACKBONE; lane 2: normals on the random-init
# backbone, then on BACKBONE (reading the features lane 1 cached). Measured on 2 cores at 9600 images (AMD EPYC,
# 2026-12-07): the two normal heads side by side 30-37 minutes, the seg head alone on 2 threads 21 minutes
# (its first try beside them ran out of memory before the seg prior was fixed; the whole script has not been
# timed as one run since); metrics in OUT/TASK_ARM/metrics.json (benchmarks/results/heads.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BACKBONE=$1
DATA=$2
RUN=${3:-runs/main}
OUT=${4:-runs/heads_sharp}
PY=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE HUMANS_NO_PROGRESS=1 MPLBACKEND=Agg
mkdir -p "$OUT"
train_head() {  # TASK ARM CHECKPOINT
  local dir="$OUT/$1_$2"
  [ -f "$dir/head.safetensors" ] && return 0
  "$PY" -m humans.heads train --task "$1" --backbone "$3" --data "$DATA" --val-data "$RUN/synth" --out "$dir" \
    --epochs 12 --size 128x96 --threads 1 --device cpu --cache-dir "$OUT/cache" --seed 0 > "$dir.log" 2>&1
}
train_head seg pretrained "$BACKBONE" &
lane1=$!
{ train_head normal random "$RUN/backbones/random_seed0.safetensors" && train_head normal pretrained "$BACKBONE"; } &
lane2=$!
wait $lane1
wait $lane2
grep -h '"mIoU"\|"mean_deg"' "$OUT"/*/metrics.json || true
