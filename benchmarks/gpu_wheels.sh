#!/usr/bin/env bash
# Wheels the lent GPU machine's python3 lacks (it holds torch, timm, numpy, Pillow, OpenCV, matplotlib, safetensors,
# but not pydantic or webdataset), fetched here into .whl (git-ignored through .git/info/exclude) for a device
# call to carry: see benchmarks/gpu_sharp_heads.sh. Python 3.12, x86-64 manylinux, the versions this project pins.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")" .whl
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 webdataset==1.0.2 \
  braceexpand==0.1.7 2>&1 | grep -v "is ignored: it is neither" || true
ls .whl
