"""Small hand-built run directories for the report and verify tests.

``make_run(tmp, plan)`` writes a run directory the way shared/schema.py describes it: real JPEG
files as the pool, stage decision parquets (with stage-specific score columns), WebDataset shards
written by ``shared.shards.ShardWriter``, index.parquet, manifest.json and run.json. The plan says
at which stage each item is rejected (and why), so tests know every count in advance.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from humans.shared.shards import ShardWriter, write_manifest

os.environ.setdefault("HUMANS_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

STAGES = ["00_read", "01_resolution", "02_quality", "03_person", "04_framing", "05_phash", "06_embedding"]


@dataclass
class Item:
    key: str
    reject_stage: str | None = None
    reason: str | None = None
    data: bytes = b""
    width: int = 0
    height: int = 0
    dup_of: str | None = None
    source: str = ""


def jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 220, size=3)
    img = Image.new("RGB", (width, height), tuple(int(x) for x in base))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
        d.ellipse([x0, y0, x0 + int(rng.integers(6, width // 2)), y0 + int(rng.integers(6, height // 2))],
                  fill=tuple(int(x) for x in rng.integers(0, 255, size=3)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def default_plan() -> list[tuple[str | None, str | None]]:
    """(reject_stage, reason) per item: 40 items, 20 kept."""
    plan: list[tuple[str | None, str | None]] = []
    plan += [("00_read", "corrupt"), ("00_read", "truncated"), ("00_read", "empty")]
    plan += [("01_resolution", "too_small")] * 4
    plan += [("02_quality", "blurry")] * 2 + [("02_quality", "overexposed")]
    plan += [("03_person", "no_person")] * 4
    plan += [("04_framing", "person_too_small")] * 2
    plan += [("05_phash", "near_duplicate")] * 3
    plan += [("06_embedding", "semantic_duplicate")]
    plan += [(None, None)] * 20
    return plan


def make_run(root: Path, plan: list[tuple[str | None, str | None]], samples_per_shard: int = 8,
             empty_later_stages: bool = True) -> Path:
    """Write pool/ and run/ under ``root``; returns the run directory."""
    pool = root / "pool"
    run = root / "run"
    pool.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    kept_keys = []
    for i, (stage, reason) in enumerate(plan):
        key = f"img{i:04d}"
        w, h = (40, 30) if stage == "01_resolution" else (64 + 8 * (i % 5), 48 + 8 * (i % 3))
        it = Item(key, stage, reason, width=w, height=h)
        if stage == "00_read":
            it.data = {"corrupt": b"\xff\xd8\xffnot really a jpeg" * 10, "empty": b""}.get(
                reason or "", jpeg(w, h, i)[:200])
        else:
            it.data = jpeg(w, h, i)
        if stage is None:
            kept_keys.append(key)
        items.append(it)
    # duplicates copy the bytes of a kept item
    dups = [it for it in items if it.reject_stage in ("05_phash", "06_embedding")]
    for j, it in enumerate(dups):
        rep = items[[i for i, x in enumerate(items) if x.reject_stage is None][j % max(1, len(kept_keys))]] \
            if kept_keys else None
        if rep is not None:
            it.dup_of = rep.key
            it.data, it.width, it.height = rep.data, rep.width, rep.height
    for it in items:
        p = pool / f"{it.key}.jpg"
        p.write_bytes(it.data)
        it.source = str(p)

    alive = list(items)
    for si, stage in enumerate(STAGES):
        rows = []
        for n, it in enumerate(alive):
            kept = it.reject_stage != stage
            row = {"key": it.key, "source": it.source, "stage": stage.split("_", 1)[1], "kept": kept,
                   "reason": None if kept else it.reason}
            if stage == "01_resolution":
                row.update(width=it.width, height=it.height)
            elif stage == "02_quality":
                row.update(sharpness=float(5.0 if it.reject_stage == stage else 50.0 + n),
                           brightness=float(0.95 if it.reason == "overexposed" else 0.5),
                           entropy=float(6.0 + 0.01 * n))
            elif stage == "03_person":
                np_ = 0 if it.reject_stage == stage else 1 + n % 3
                row.update(n_persons=np_, det_score=(0.2 if np_ == 0 else 0.6 + 0.01 * n),
                           largest_person_frac=(0.0 if np_ == 0 else 0.1 + 0.02 * n))
            elif stage == "04_framing":
                row.update(largest_person_frac=(0.01 if not kept else 0.2 + 0.01 * n))
            elif stage == "05_phash":  # like the pipeline: every row names its cluster's representative
                row.update(phash=f"{n:016x}", cluster_rep=it.dup_of if not kept else it.key)
            elif stage == "06_embedding":
                row.update(dup_of=it.dup_of if not kept else None)
            rows.append(row)
        if stage in ("05_phash", "06_embedding"):
            sizes: dict[str, int] = {}
            for r in rows:
                rep = r.get("dup_of") or r.get("cluster_rep") or r["key"]
                sizes[rep] = sizes.get(rep, 0) + 1
            for r in rows:
                rep = r.get("dup_of") or r.get("cluster_rep") or r["key"]
                r["cluster_id"] = int(rep[3:])
                r["cluster_size"] = sizes[rep]
        d = run / "stages" / f"{stage}"
        d.mkdir(parents=True, exist_ok=True)
        if rows:
            half = max(1, len(rows) // 2)  # two part files per stage, like parallel tasks
            for part, chunk in enumerate((rows[:half], rows[half:])):
                if chunk:
                    pq.write_table(pa.Table.from_pylist(chunk), d / f"part-{part:05d}.parquet")
        elif empty_later_stages:
            pq.write_table(pa.table({"key": pa.array([], pa.string()), "source": pa.array([], pa.string()),
                                     "stage": pa.array([], pa.string()), "kept": pa.array([], pa.bool_()),
                                     "reason": pa.array([], pa.string())}), d / "part-00000.parquet")
        alive = [it for it in alive if it.reject_stage != stage]

    kept = [it for it in items if it.reject_stage is None]
    infos, index_rows = [], []
    for s in range(0, len(kept), samples_per_shard):
        with ShardWriter(run, "shard", s // samples_per_shard) as w:
            for n, it in enumerate(kept[s:s + samples_per_shard]):
                sha = hashlib.sha256(it.data).hexdigest()
                persons = [{"box": [1.0, 2.0, 20.0, 30.0], "score": 0.9}] * (1 + n % 2)
                meta = {"key": it.key, "source": it.source, "width": it.width, "height": it.height,
                        "image_ext": "jpg", "image_sha256": sha, "persons": persons,
                        "scores": {"sharpness": 50.0}}
                w.add(it.key, {"jpg": it.data, "json": meta})
                index_rows.append({"key": it.key, "shard": w.name, "source": it.source, "image_ext": "jpg",
                                   "image_bytes": len(it.data), "image_sha256": sha, "width": it.width,
                                   "height": it.height, "n_persons": len(persons),
                                   "largest_person_frac": 0.3, "det_score": 0.9, "cluster_id": int(it.key[3:])})
            infos.append(w.close())
    write_manifest(run, infos)
    schema = pa.schema([("key", pa.string()), ("shard", pa.string()), ("source", pa.string()),
                        ("image_ext", pa.string()), ("image_bytes", pa.int64()), ("image_sha256", pa.string()),
                        ("width", pa.int64()), ("height", pa.int64()), ("n_persons", pa.int64()),
                        ("largest_person_frac", pa.float64()), ("det_score", pa.float64()),
                        ("cluster_id", pa.int64())])
    pq.write_table(pa.Table.from_pylist(index_rows, schema=schema), run / "index.parquet")
    (run / "run.json").write_text(json.dumps({"seconds": 12.5, "stages": {s: {"seconds": 1.5} for s in STAGES}}))
    return run


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("small"), default_plan())


@pytest.fixture
def fresh_run(tmp_path) -> Path:
    """A private copy (tests that damage shards get their own)."""
    return make_run(tmp_path, default_plan(), samples_per_shard=5)


@pytest.fixture
def run_factory():
    """``make_run`` itself, for tests that need a run with their own plan."""
    return make_run
