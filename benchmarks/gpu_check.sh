#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): xformers vs SDPA and grouped-query kernels, sapiens2-0.4b
# bf16 pretraining throughput / MFU at 1024x768, 4K forward memory, one JSON line per figure, in
# under 10 minutes on one GPU. Without CUDA it runs the CPU-runnable parts and says what it skipped.
# Lines are also appended to $GPU_CHECK_OUT (default benchmarks/results/gpu_check.jsonl).
#   bash benchmarks/gpu_check.sh [--steps 10] [--batch 8] [--only attention|pretrain|memory]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
export HUMANS_NO_PROGRESS=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${GPU_CHECK_OUT:-benchmarks/results/gpu_check.jsonl}
mkdir -p "$(dirname "$OUT")"
timeout 600 "$PY" benchmarks/gpu_check.py "$@" | tee -a "$OUT"
