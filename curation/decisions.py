"""Decision parquets: one explicit Arrow schema per stage, written atomically, read back as pandas.

Every file has the common ``shared.schema.DECISION_COLUMNS`` (key, source, stage, kept, reason)
plus ``task_id`` and the stage's own score columns. Explicit schemas keep files of different tasks
concatenable even when a task happens to have only nulls in a column. Paths may be local or object-store
URIs (``shared.storage``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from humans.shared import storage
from humans.shared.schema import STAGES_DIR

from .config import STAGE_DIRS

_COMMON = [("key", pa.string()), ("source", pa.string()), ("stage", pa.string()), ("kept", pa.bool_()),
           ("reason", pa.string()), ("task_id", pa.string())]

_STAGE_COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "read": [("failed_at", pa.string()), ("bytes", pa.int64()), ("format", pa.string()),
             ("detail", pa.string())],
    "resolution": [("width", pa.int64()), ("height", pa.int64()), ("aspect", pa.float64()),
                   ("format", pa.string()), ("mode", pa.string())],
    "quality": [("sharpness", pa.float64()), ("mean", pa.float64()), ("dark_frac", pa.float64()),
                ("bright_frac", pa.float64()), ("entropy", pa.float64()), ("jpeg_quality", pa.float64()),
                ("blockiness", pa.float64())],
    "person": [("n_detections", pa.int64()), ("n_persons", pa.int64()), ("det_score", pa.float64()),
               ("detector", pa.string()), ("persons_json", pa.string())],
    "framing": [("n_persons", pa.int64()), ("largest_person_frac", pa.float64()),
                ("largest_height_frac", pa.float64()), ("touching_sides", pa.int64()),
                ("cut_landmarks", pa.int64())],
    "phash": [("phash", pa.string()), ("cluster_rep", pa.string()), ("cluster_size", pa.int64()),
              ("distance", pa.int64())],
    "embedding": [("cluster_rep", pa.string()), ("cluster_size", pa.int64()), ("similarity", pa.float64()),
                  ("model", pa.string())],
}

STAGED_SCHEMA = pa.schema([
    ("key", pa.string()), ("source", pa.string()), ("order", pa.int64()), ("data", pa.binary()),
    ("ext", pa.string()), ("width", pa.int64()), ("height", pa.int64()), ("file_bytes", pa.int64()),
    ("orig_format", pa.string()), ("orig_mode", pa.string()), ("converted", pa.string()),
    ("phash", pa.string()), ("meta_json", pa.string()),
    # the embedding copy (``stages.embedding.embedding_copy``): RGB uint8 rows, or null (decode instead)
    ("embed_pixels", pa.binary()), ("embed_height", pa.int32()), ("embed_width", pa.int32()),
])
EMBED_COLUMNS = ("embed_pixels", "embed_height", "embed_width")


def schema(stage: str) -> pa.Schema:
    return pa.schema(_COMMON + _STAGE_COLUMNS[stage])


def stage_dir(run_dir: str | Path, stage: str) -> str:
    """The folder (or object-store prefix) of ``stage``'s decision parquets."""
    return storage.join(str(run_dir), STAGES_DIR, STAGE_DIRS[stage])


def decision_path(run_dir: str | Path, stage: str, task_id: str) -> str:
    return storage.join(stage_dir(run_dir, stage), f"{task_id}.parquet")


def write_rows(path: str | Path, rows: list[dict[str, Any]], arrow_schema: pa.Schema) -> None:
    """Write ``rows`` (dicts; missing columns become null) atomically as parquet (local path or URI)."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in arrow_schema}
    storage.write_parquet(str(path), pa.table(cols, schema=arrow_schema))


def write_decisions(run_dir: str | Path, stage: str, task_id: str, rows: list[dict[str, Any]]) -> str:
    path = decision_path(run_dir, stage, task_id)
    for r in rows:
        r.setdefault("stage", stage)
        r.setdefault("task_id", task_id)
    write_rows(path, rows, schema(stage))
    return path


def read_decisions(run_dir: str | Path, stage: str, columns: list[str] | None = None) -> pd.DataFrame:
    """All decision rows of ``stage`` (empty frame with the schema's columns if none)."""
    folder = stage_dir(run_dir, stage)
    files = [storage.join(folder, rel) for rel, _ in storage.list_files(folder)
             if rel.endswith(".parquet") and not storage.basename(rel).startswith(".")]
    if not files:
        return schema(stage).empty_table().to_pandas()[columns or slice(None)]
    return pd.concat([storage.read_parquet(f, columns=columns).to_pandas() for f in files], ignore_index=True)
