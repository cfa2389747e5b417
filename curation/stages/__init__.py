"""The six curation stages, cheapest first; each module owns one stage's scoring and decision.

A stage decision is ``(kept, reason, scores)``: ``reason`` is "" when kept, otherwise a short named
reason (``too_small``, ``blurry``, ``no_person``, ``phash_duplicate`` ...) that lands in the stage's
decision parquet under ``OUT/stages/NN_name/``.
"""
from __future__ import annotations

from typing import Any

Decision = tuple[bool, str, dict[str, Any]]

__all__ = ["Decision"]
