"""Final output: WebDataset shards of the kept samples, ``index.parquet`` and ``manifest.json``.

The kept samples are laid out deterministically (pool task order, then order inside the task) and
cut into shards of ``samples_per_shard``; so a rerun plans the very same shards. Each shard is
written by ``shared.shards.ShardWriter`` (temp name, renamed when whole) and then recorded in
``work/shards/NAME.json`` (its ShardInfo and index rows). A shard whose record exists and whose
file matches the record's size and key digest is skipped on resume; the index and manifest are
rewritten atomically from the records at the end, so nothing is written twice or lost.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from humans.shared.atomic import atomic_path
from humans.shared.schema import INDEX_NAME, SampleMeta, shard_name
from humans.shared.shards import ShardInfo, ShardWriter, atomic_write_json, keys_digest, write_manifest

from .work import WORK_DIR, staged_path

INDEX_SCHEMA = pa.schema([
    ("key", pa.string()), ("shard", pa.string()), ("source", pa.string()), ("image_ext", pa.string()),
    ("image_bytes", pa.int64()), ("image_sha256", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
    ("n_persons", pa.int64()), ("largest_person_frac", pa.float64()), ("det_score", pa.float64()),
    ("cluster_id", pa.int64()),
])


def record_path(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / WORK_DIR / "shards" / f"{name}.json"


def cluster_id(rep: str) -> int:
    """A stable 48-bit id of the duplicate cluster a representative stands for."""
    return int(hashlib.sha1(rep.encode()).hexdigest()[:12], 16)


def plan_shards(kept: list[tuple[str, str]], samples_per_shard: int) -> list[list[tuple[str, str]]]:
    """Cut the ordered (task_id, key) list into shards."""
    return [kept[i:i + samples_per_shard] for i in range(0, len(kept), samples_per_shard)]


def _valid_record(run_dir: Path, name: str, keys: list[str]) -> dict | None:
    rec_path = record_path(run_dir, name)
    if not rec_path.is_file():
        return None
    rec = json.loads(rec_path.read_text())
    tar = run_dir / name
    info = rec["info"]
    if not tar.is_file() or tar.stat().st_size != info["bytes"] or info["keys_sha256"] != keys_digest(keys):
        return None
    return rec


def write_shard(run_dir: str, prefix: str, index: int, members: list[tuple[str, str]],
                extra: dict[str, dict[str, Any]], run_info: dict[str, Any]) -> dict:
    """Write shard ``index`` holding ``members`` [(task_id, key)] unless a valid record says it exists.

    ``extra[key]`` carries the dedup scores (phash / embedding cluster sizes) to put in the metadata.
    Returns the record ``{"info": ShardInfo dict, "index": [rows], "skipped": bool}``.
    """
    run = Path(run_dir)
    name = shard_name(prefix, index)
    keys = [k for _, k in members]
    rec = _valid_record(run, name, keys)
    if rec is not None:
        rec["skipped"] = True
        return rec
    wanted: dict[str, set[str]] = {}
    for task_id, key in members:
        wanted.setdefault(task_id, set()).add(key)
    rows: dict[str, dict] = {}
    for task_id, ks in wanted.items():
        table = pq.read_table(staged_path(run, task_id)).to_pylist()
        for r in table:
            if r["key"] in ks:
                rows[r["key"]] = r
    index_rows = []
    with ShardWriter(run, prefix, index) as writer:
        for key in keys:
            r = rows[key]
            meta_extra = json.loads(r["meta_json"])
            scores = dict(meta_extra.get("scores", {}))
            scores.update(extra.get(key, {}))
            scores["phash"] = {**scores.get("phash", {}), "hash": r["phash"]}
            sha = hashlib.sha256(r["data"]).hexdigest()
            rep_of = [v.get("cluster_size", 1) for v in extra.get(key, {}).values() if isinstance(v, dict)]
            cid = cluster_id(key) if any(n > 1 for n in rep_of) else -1
            fields = {**run_info, "detector": meta_extra.get("detector"),
                      "converted_from": meta_extra.get("converted_from"), "cluster_id": cid}
            meta = SampleMeta(key=key, source=r["source"], width=r["width"], height=r["height"],
                              image_ext=r["ext"], image_sha256=sha, persons=meta_extra.get("persons", []),
                              scores=scores, **fields)
            writer.add(key, {r["ext"]: r["data"], "json": meta.model_dump(mode="json")})
            persons = meta_extra.get("persons", [])
            framing = scores.get("framing", {})
            index_rows.append({
                "key": key, "shard": name, "source": r["source"], "image_ext": r["ext"],
                "image_bytes": len(r["data"]), "image_sha256": sha, "width": r["width"], "height": r["height"],
                "n_persons": len(persons), "largest_person_frac": framing.get("largest_person_frac"),
                "det_score": max((p["score"] for p in persons), default=None), "cluster_id": cid})
        info = writer.close()
    rec = {"info": asdict(info), "index": index_rows}
    record_path(run, name).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record_path(run, name), rec)
    rec["skipped"] = False
    return rec


def finish(run_dir: str | Path, records: list[dict], extra_manifest: dict | None = None) -> tuple[Path, Path]:
    """Write ``index.parquet`` and ``manifest.json`` (both atomically) from the shard records."""
    run = Path(run_dir)
    rows = [r for rec in sorted(records, key=lambda x: x["info"]["name"]) for r in rec["index"]]
    cols = {f.name: [r.get(f.name) for r in rows] for f in INDEX_SCHEMA}
    with atomic_path(run / INDEX_NAME, tmp=run / (INDEX_NAME + ".tmp")) as tmp:
        pq.write_table(pa.table(cols, schema=INDEX_SCHEMA), tmp)
    manifest = write_manifest(run, [ShardInfo(**rec["info"]) for rec in records], extra_manifest)
    return run / INDEX_NAME, manifest


def remove_stale(run_dir: str | Path, prefix: str, n_shards: int) -> list[str]:
    """Delete temporary shard files and shards beyond the plan (from an earlier, larger run)."""
    run = Path(run_dir)
    removed = []
    for p in run.glob(f"{prefix}-*.tar.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p.name)
    for p in run.glob(f"{prefix}-*.tar"):
        try:
            idx = int(p.name[len(prefix) + 1:-4])
        except ValueError:
            continue
        if idx >= n_shards:
            p.unlink(missing_ok=True)
            record_path(run, p.name).unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def read_index(run_dir: str | Path) -> pd.DataFrame:
    return pq.read_table(Path(run_dir) / INDEX_NAME).to_pandas()
