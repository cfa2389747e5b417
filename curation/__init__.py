"""Curation: a Ray pipeline from a web image pool to human-centric WebDataset shards.

Owns the six stages (resolution, quality, person, framing, pHash dedup, embedding dedup), their
orchestration on Ray with resume, shard writing and per-stage scoring. Entry points:
``python -m curation {run,demo-pool,score,report,verify}`` and ``curation.run_pipeline``.
"""
from __future__ import annotations

from typing import Any


def run_pipeline(pool: str, out: str, pipeline: str = "humans", config_path: str | None = None,
                 ray_address: str | None = None, num_cpus: int | None = None,
                 overrides: dict | None = None) -> dict[str, Any]:
    """Curate ``pool`` into shards under ``out`` (see ``curation.pipeline.run_pipeline``)."""
    from .pipeline import run_pipeline as _run

    return _run(pool, out, pipeline=pipeline, config_path=config_path, ray_address=ray_address,
                num_cpus=num_cpus, overrides=overrides)


__all__ = ["run_pipeline"]
