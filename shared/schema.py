"""The sample and shard schema: what curation writes and pretrain, report and verify read.

A curated run directory holds:

    OUT/{prefix}-000000.tar ...   WebDataset shards; per sample ``KEY.{jpg,png,webp,...}`` holds the
                                  image bytes (the original bytes unless resized) and ``KEY.json``
                                  its metadata (``SampleMeta``)
    OUT/index.parquet             one row per kept sample (``INDEX_COLUMNS``)
    OUT/manifest.json             one entry per shard: name, sample count, bytes, sha256
    OUT/stages/NN_name/*.parquet  every stage's decisions (``DECISION_COLUMNS`` + stage scores)
    OUT/run.json                  the pipeline config, per-stage counts and timings
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SHARD_PATTERN = "{prefix}-{index:06d}.tar"
SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{6})\.tar$")
MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.parquet"
RUN_NAME = "run.json"
STAGES_DIR = "stages"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")  # WebDataset splits on the first dot: keys carry none

# Columns every stage's decision parquet has (stages add their own score columns beside these).
DECISION_COLUMNS = ("key", "source", "stage", "kept", "reason")
# Columns of index.parquet, one row per sample in the shards.
INDEX_COLUMNS = ("key", "shard", "source", "image_ext", "image_bytes", "image_sha256", "width", "height",
                 "n_persons", "largest_person_frac", "det_score", "cluster_id")


class PersonBox(BaseModel):
    """One detected person: pixel box (x0, y0, x1, y1) in the stored image, score, optional landmarks."""

    model_config = ConfigDict(extra="allow")
    box: tuple[float, float, float, float]
    score: float
    landmarks: list[tuple[float, float, float]] | None = None  # (x, y, visibility)


class SampleMeta(BaseModel):
    """The ``KEY.json`` record stored next to each image in a shard."""

    model_config = ConfigDict(extra="allow")
    key: str
    source: str
    width: int
    height: int
    image_ext: str
    image_sha256: str
    persons: list[PersonBox] = Field(default_factory=list)
    scores: dict[str, Any] = Field(default_factory=dict)  # stage scores (quality, framing, dedup)


def shard_name(prefix: str, index: int) -> str:
    return SHARD_PATTERN.format(prefix=prefix, index=index)


def check_key(key: str) -> str:
    if not KEY_RE.match(key):
        raise ValueError(f"sample key {key!r} must match {KEY_RE.pattern} (no dots, no slashes)")
    return key
