"""Reports and verification of curated runs.

Owns ``python -m curation report`` (``build_report``: streaming statistics over the parquet index
and stage decisions, matplotlib plots, sample grids, one self-contained ``index.html`` plus
``stats.json``) and ``python -m curation verify`` (``verify_run``: every shard checked against
``manifest.json`` and ``index.parquet``). Modules: layout (finding the parts of a run), stats,
plots, grids, assets, html, build, verify, cli.
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Imported on first use: building the CLI parser must not pay for matplotlib (seconds).
    if name == "build_report":
        from .build import build_report

        return build_report
    if name in ("Problem", "verify_run"):
        from . import verify

        return getattr(verify, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Problem", "build_report", "verify_run"]
