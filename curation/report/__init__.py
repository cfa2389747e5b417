"""Reports and verification of curated runs.

Owns ``python -m curation report`` (``build_report``: streaming statistics over the parquet index
and stage decisions, matplotlib plots, sample grids, one self-contained ``index.html`` plus
``stats.json``) and ``python -m curation verify`` (``verify_run``: every shard checked against
``manifest.json`` and ``index.parquet``). Modules: layout (finding the parts of a run), stats,
plots, grids, assets, html, build, verify, cli.
"""
from __future__ import annotations

from .build import build_report
from .verify import Problem, verify_run

__all__ = ["Problem", "build_report", "verify_run"]
