#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv and installs the project into it.
# Idempotent: a second run with an up-to-date environment does almost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${HUMANS_VENV:-.venv}
stamp="$VENV/.humans-install-stamp"
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch + torchvision first: the pair that timm, open_clip and ultralytics need (see README).
"$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install -q -e ".[test]"
# mediapipe 0.10.21 is the last release that bundles its pose/face models; its declared pins
# (numpy<2, protobuf<5) clash with ray, so it goes in without its dependencies (they are listed
# in pyproject.toml). facenet-pytorch bundles real MTCNN face-detector weights.
"$VENV/bin/python" -m pip install -q --no-deps "mediapipe==0.10.21" "facenet-pytorch==2.6.0"
echo "$want" > "$stamp"
