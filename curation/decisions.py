"""Decision parquets: one explicit Arrow schema per stage, written atomically, read back as pandas.

Every file has the common ``shared.schema.DECISION_COLUMNS`` (key, source, stage, kept, reason)
plus ``task_id`` and the stage's own score columns. Explicit schemas keep files of different tasks
concatenable even when a task happens to have only nulls in a column.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from humans.shared.atomic import atomic_path
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
])


def schema(stage: str) -> pa.Schema:
    return pa.schema(_COMMON + _STAGE_COLUMNS[stage])


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / STAGES_DIR / STAGE_DIRS[stage]


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_rows(path: str | Path, rows: list[dict[str, Any]], arrow_schema: pa.Schema) -> None:
    """Write ``rows`` (dicts; missing columns become null) atomically as parquet."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in arrow_schema}
    _atomic_parquet(pa.table(cols, schema=arrow_schema), Path(path))


def write_decisions(run_dir: str | Path, stage: str, task_id: str, rows: list[dict[str, Any]]) -> Path:
    path = stage_dir(run_dir, stage) / f"{task_id}.parquet"
    for r in rows:
        r.setdefault("stage", stage)
        r.setdefault("task_id", task_id)
    write_rows(path, rows, schema(stage))
    return path


def read_decisions(run_dir: str | Path, stage: str, columns: list[str] | None = None) -> pd.DataFrame:
    """All decision rows of ``stage`` (empty frame with the schema's columns if none)."""
    files = sorted(stage_dir(run_dir, stage).glob("*.parquet"))
    if not files:
        return schema(stage).empty_table().to_pandas()[columns or slice(None)]
    return pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files], ignore_index=True)
