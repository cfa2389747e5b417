#!/usr/bin/env bash
# The main-job command of README.md: installs the environment (scripts/install.sh), then runs the
# whole chain (tools/main_job.py) on the embedded defaults. Extra arguments go to tools/main_job.py
# (e.g. --out DIR, --preset tiny, --fresh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 YOLO_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 MPLBACKEND=Agg
exec "${HUMANS_VENV:-.venv}/bin/python" tools/main_job.py "$@"
