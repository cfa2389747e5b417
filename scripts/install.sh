#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment and installs the project into it.
#   HUMANS_VENV=DIR      where the environment lives (default .venv; scripts/test.sh and main.sh use the same)
#   HUMANS_EXTRAS=mediapipe
#                        also install the optional MediaPipe + facenet-pytorch detectors. Their wheels pin
#                        numpy<2 / protobuf<5 / torch<2.3, which clash with ray and torch here, so they go in
#                        with --no-deps and `pip check` then lists those pins (the default install is clean).
# On a machine where `nvidia-smi` sees a GPU, xformers is added (its attention ops are CUDA-only).
# Idempotent: a second run with an up-to-date environment does almost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${HUMANS_VENV:-.venv}
EXTRAS=${HUMANS_EXTRAS:-}
gpu=no
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then gpu=yes; fi
stamp="$VENV/.humans-install-stamp"
want=$( (cat pyproject.toml scripts/install.sh; echo "gpu=$gpu extras=$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# Pre-flight: a first install writes about 7.2 GB (PyTorch's CUDA build is 5.3 GB of it). Say so before pip
# runs out of space half-way (pip's own message is a bare "[Errno 28] No space left on device").
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; }; then
  need_mb=${HUMANS_INSTALL_NEED_MB:-7800}
  free_mb=$(df -Pm "$(dirname "$VENV")" | awk 'NR==2 {print $4}')
  if [ -n "$free_mb" ] && [ "$free_mb" -lt "$need_mb" ]; then
    echo "install.sh: not enough disk for the environment: $free_mb MB free at $VENV, about $need_mb MB needed" >&2
    echo "  (torch 2.14.1 + torchvision 0.29.1 are a CUDA build, see README 'Install'). Free space, or point" >&2
    echo "  HUMANS_VENV at a larger disk. HUMANS_INSTALL_NEED_MB=0 skips this check." >&2
    exit 28
  fi
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_() { "$VENV/bin/python" -m pip "$@"; }
pip_ install -q --upgrade pip
# torch + torchvision first: the pair that timm, open_clip and ultralytics need (see README: no CPU-only
# torch build has a working torchvision beside it in the package index, so this is the CUDA build).
pip_ install -q "torch==2.14.1" "torchvision==0.29.1"
pip_ install -q -e ".[test]"
if [ "$gpu" = yes ]; then
  pip_ install -q "xformers==0.0.35"   # the [gpu] extra of pyproject.toml
fi
case ",$EXTRAS," in
  *,mediapipe,*)
    # mediapipe 0.10.21 is the last release that bundles its pose/face models; facenet-pytorch bundles
    # MTCNN weights. Both only with --no-deps (their pins clash; see the header).
    pip_ install -q -e ".[test,mediapipe]"
    pip_ install -q --no-deps "mediapipe==0.10.21" "facenet-pytorch==2.6.0"
    ;;
  ,,) ;;
  *) echo "install.sh: unknown HUMANS_EXTRAS='$EXTRAS' (allowed: mediapipe)" >&2; exit 2 ;;
esac
if [ -z "$EXTRAS" ]; then
  pip_ check
fi
echo "$want" > "$stamp"
