#!/usr/bin/env bash
# The test command of README.md: installs the environment (scripts/install.sh), then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 YOLO_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 \
  HUMANS_NO_PROGRESS=1 MPLBACKEND=Agg
# two workers: the tests that share the curated demo pool (and start Ray) stay on one of them (tests/conftest.py)
exec "${HUMANS_VENV:-.venv}/bin/python" -m pytest -q -n 2 --dist loadgroup --durations=15 "$@"
