"""Stage 5 on Ray, pHash grouping: LSH band rows of every pool task are shuffled by bucket to
``partitions`` reduce tasks (one map task per batch of pool tasks, ``num_returns=partitions``), exact Hamming
distance inside buckets (``stages.phash``), union-find on the driver over the duplicate edges only
(``stages.clusters``), decisions written per pool task. A done marker makes it resumable.
"""
from __future__ import annotations

from humans.shared import storage
from humans.shared.log import get_logger, progress

from ..config import PipelineConfig
from ..decisions import write_decisions
from ..raytools import batches, remote
from ..sources import PoolTask
from ..work import staged_path, work_path
from . import phash as phash_stage
from .clusters import rank_of, resolve_clusters

log = get_logger("curation")


def _map(paths: list[str], nbits: int, bands: int, partitions: int):
    """Band rows of a batch of pool tasks' staged survivors, one part per reduce partition."""
    keys, hexes, attrs = [], [], []
    for path in paths:
        t = storage.read_parquet(path, columns=["key", "phash", "width", "height", "file_bytes"]).to_pydict()
        keys += t["key"]
        hexes += t["phash"]
        attrs += [(w * h, b, k) for k, w, h, b in zip(t["key"], t["width"], t["height"], t["file_bytes"])]
    parts = phash_stage.band_rows(keys, hexes, nbits, bands, partitions, attrs)
    return parts[0] if partitions == 1 else tuple(parts)


def _reduce(nbits: int, max_distance: int, *parts):
    return phash_stage.bucket_pairs(list(parts), nbits, max_distance)


def _decide(run_dir: str, task_ids: list[str], clusters: dict, nearest: dict) -> int:
    return sum(_decide_one(run_dir, task_id, clusters, nearest) for task_id in task_ids)


def _decide_one(run_dir: str, task_id: str, clusters: dict, nearest: dict) -> int:
    t = storage.read_parquet(staged_path(run_dir, task_id), columns=["key", "source", "phash"]).to_pydict()
    rows = []
    for key, source, h in zip(t["key"], t["source"], t["phash"]):
        rep, size = clusters.get(key, (key, 1))
        kept = rep == key
        rows.append({"key": key, "source": source, "kept": kept, "reason": "" if kept else "phash_duplicate",
                     "phash": h, "cluster_rep": rep, "cluster_size": size, "distance": nearest.get(key)})
    write_decisions(run_dir, "phash", task_id, rows)
    return len(rows)


def group_phash(tasks: list[PoolTask], cfg: PipelineConfig, out: str) -> dict:
    """Stage 5 over all staged survivors; returns the summary written to ``work/phash.done.json``."""
    import ray

    st = cfg.stage("phash")
    marker = work_path(out, "phash.done.json")
    if storage.is_file(marker):
        log.info("stage 5 phash: already done (resume)")
        return storage.read_json(marker)
    nbits, P = st.hash_size ** 2, st.partitions
    res = st.resources
    mapper = remote(_map, res, num_returns=P)
    groups = batches(tasks)
    maps = [mapper.remote([staged_path(out, t.task_id) for t in g], nbits, st.bands, P) for g in groups]
    if P == 1:
        maps = [[m] for m in maps]
    reducer = remote(_reduce, res)
    reds = [reducer.remote(nbits, st.max_distance, *[m[p] for m in maps]) for p in range(P)]
    edges, attrs = [], {}
    for e, a in progress((ray.get(r) for r in reds), desc="stage 5 phash buckets", total=P, unit="part"):
        edges.extend(e)
        attrs.update(a)
    clusters = resolve_clusters(((a, b) for a, b, _ in edges), {k: rank_of(a) for k, a in attrs.items()})
    nearest: dict[str, int] = {}
    for a, b, d in edges:
        nearest[a] = min(nearest.get(a, d), d)
        nearest[b] = min(nearest.get(b, d), d)
    cref, nref = ray.put(clusters), ray.put(nearest)
    decide = remote(_decide, res)
    ray.get([decide.remote(out, [t.task_id for t in g], cref, nref) for g in groups])
    info = {"edges": len(edges), "clustered": len(clusters),
            "removed": sum(1 for k, (r, _) in clusters.items() if r != k)}
    storage.write_json(marker, info)
    log.info("stage 5 phash: %d duplicate edges, %d images in clusters, %d removed", info["edges"],
             info["clustered"], info["removed"])
    return info
