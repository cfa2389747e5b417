"""Process-wide runtime defaults: offline mode for every library that might reach for a network,
no usage telemetry, and quiet, bounded thread pools. Call ``setup_runtime()`` at each entry point."""
from __future__ import annotations

import os
import tempfile

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "YOLO_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_raylet_start_wait_time_s": "120",  # a loaded 2-core machine can take longer than the 60 s default
    "TOKENIZERS_PARALLELISM": "false",
    "GLOG_minloglevel": "2",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
# OpenMP threads that sleep instead of spinning while they wait: on a machine shared with other
# processes (Ray workers, data loaders, other jobs) spinning threads steal each other's cores. On our
# 2-core machine under load a study ViT's forward pass took 2.1 s with the default (active) policy
# and 0.17 s with PASSIVE (benchmarks/results/study.md). Read when torch loads OpenMP, so it must be
# in the environment before ``import torch``: scripts/*.sh export it, entry points call setup_runtime()
# before importing torch.
THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def setup_runtime() -> None:
    """Set offline/telemetry environment defaults (existing values win)."""
    for key, value in {**OFFLINE_ENV, **THREAD_ENV}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "humans-yolo"))
    os.environ.setdefault("MPLBACKEND", "Agg")
