"""Final output: WebDataset shards of the kept samples, ``index.parquet`` and ``manifest.json``.

The kept samples are laid out deterministically (pool task order, then order inside the task) and
cut into shards of ``samples_per_shard``; so a rerun plans the very same shards. Each shard is
written by ``shared.shards.ShardWriter`` (temp name, renamed when whole) and then recorded in
``work/shards/NAME.json`` (its ShardInfo and index rows). A shard whose record exists and whose
file matches the record's size and key digest is skipped on resume; the index and manifest are
rewritten atomically from the records at the end, so nothing is written twice or lost.

The run folder may be an object-store URI (``shared.storage``): a shard is then built in a local
temporary folder and uploaded once whole, so no partial shard is ever visible under its name.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from humans.shared import storage
from humans.shared.schema import INDEX_NAME, MANIFEST_NAME, SHARD_RE, SampleMeta, shard_name
from humans.shared.shards import ShardInfo, ShardWriter, keys_digest, write_manifest

from .decisions import EMBED_COLUMNS, STAGED_SCHEMA
from .work import node_id, staged_path, work_path

_SHARD_COLUMNS = [f.name for f in STAGED_SCHEMA if f.name not in EMBED_COLUMNS]  # the embedding copy stays out

INDEX_SCHEMA = pa.schema([
    ("key", pa.string()), ("shard", pa.string()), ("source", pa.string()), ("image_ext", pa.string()),
    ("image_bytes", pa.int64()), ("image_sha256", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
    ("n_persons", pa.int64()), ("largest_person_frac", pa.float64()), ("det_score", pa.float64()),
    ("cluster_id", pa.int64()),
])


def record_path(run_dir: str | Path, name: str) -> str:
    return work_path(run_dir, "shards", f"{name}.json")


def cluster_id(rep: str) -> int:
    """A stable 48-bit id of the duplicate cluster a representative stands for."""
    return int(hashlib.sha1(rep.encode()).hexdigest()[:12], 16)


def plan_shards(kept: list[tuple[str, str]], samples_per_shard: int) -> list[list[tuple[str, str]]]:
    """Cut the ordered (task_id, key) list into shards."""
    return [kept[i:i + samples_per_shard] for i in range(0, len(kept), samples_per_shard)]


def _valid_record(run_dir: str, name: str, keys: list[str]) -> dict | None:
    rec_path = record_path(run_dir, name)
    if not storage.is_file(rec_path):
        return None
    rec = storage.read_json(rec_path)
    info = rec["info"]
    if storage.size(storage.join(run_dir, name)) != info["bytes"] or info["keys_sha256"] != keys_digest(keys):
        return None
    return rec


def write_shard(run_dir: str, prefix: str, index: int, members: list[tuple[str, str]],
                extra: dict[str, dict[str, Any]], run_info: dict[str, Any]) -> dict:
    """Write shard ``index`` holding ``members`` [(task_id, key)] unless a valid record says it exists.

    ``extra[key]`` carries the dedup scores (phash / embedding cluster sizes) to put in the metadata.
    Returns the record ``{"info": ShardInfo dict, "index": [rows], "skipped": bool}``.
    """
    run = str(run_dir)
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
        table = storage.read_parquet(staged_path(run, task_id), columns=_SHARD_COLUMNS).to_pylist()
        for r in table:
            if r["key"] in ks:
                rows[r["key"]] = r
    index_rows = []
    local_dir = None if storage.is_remote(run) else run
    tmpdir = tempfile.TemporaryDirectory(prefix="humans-shard-") if local_dir is None else None
    with ShardWriter(local_dir or tmpdir.name, prefix, index) as writer:
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
    if tmpdir is not None:  # object store: upload the whole shard, then drop the local copy
        with tmpdir:
            storage.put_file(os.path.join(tmpdir.name, name), storage.join(run, name))
    rec = {"info": asdict(info), "index": index_rows, "node_id": node_id()}
    storage.write_json(record_path(run, name), rec)
    rec["skipped"] = False
    return rec


def finish(run_dir: str | Path, records: list[dict], extra_manifest: dict | None = None) -> tuple[str, str]:
    """Write ``index.parquet`` and ``manifest.json`` (both atomically) from the shard records."""
    run = str(run_dir)
    rows = [r for rec in sorted(records, key=lambda x: x["info"]["name"]) for r in rec["index"]]
    cols = {f.name: [r.get(f.name) for r in rows] for f in INDEX_SCHEMA}
    storage.write_parquet(storage.join(run, INDEX_NAME), pa.table(cols, schema=INDEX_SCHEMA))
    infos = [ShardInfo(**rec["info"]) for rec in records]
    if storage.is_remote(run):  # the manifest's format lives in shared.shards: write it there, then upload
        with tempfile.TemporaryDirectory(prefix="humans-manifest-") as tmp:
            storage.write_bytes(storage.join(run, MANIFEST_NAME),
                                Path(write_manifest(tmp, infos, extra_manifest)).read_bytes())
    else:
        write_manifest(run, infos, extra_manifest)
    return storage.join(run, INDEX_NAME), storage.join(run, MANIFEST_NAME)


def remove_stale(run_dir: str | Path, prefix: str, n_shards: int) -> list[str]:
    """Delete temporary shard files and shards beyond the plan (from an earlier, larger run)."""
    run = str(run_dir)
    removed = []
    for name, _ in storage.list_files(run):
        if name.startswith(f"{prefix}-") and name.endswith(".tar.tmp"):
            storage.delete(storage.join(run, name))
            removed.append(name)
            continue
        if not (name.startswith(f"{prefix}-") and name.endswith(".tar")):
            continue
        try:
            idx = int(name[len(prefix) + 1:-4])
        except ValueError:
            continue
        if idx >= n_shards:
            storage.delete(storage.join(run, name))
            storage.delete(record_path(run, name))
            removed.append(name)
    return removed


def list_shard_uris(run_dir: str | Path) -> list[str]:
    """The whole shards of a run (local paths or URIs), sorted by name."""
    run = str(run_dir)
    return [storage.join(run, n) for n, _ in storage.list_files(run) if SHARD_RE.match(n)]


def read_index(run_dir: str | Path) -> pd.DataFrame:
    return storage.read_parquet(storage.join(str(run_dir), INDEX_NAME)).to_pandas()
