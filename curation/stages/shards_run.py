"""The last step on Ray: the kept samples (stage decisions intersected, pool order) are laid out into
shards, one Ray task per shard (spread over the nodes, skipped when already whole), then
``index.parquet`` and ``manifest.json`` are written from the shard records (``curation.writer``).
"""
from __future__ import annotations

from humans.shared import storage
from humans.shared.log import get_logger, progress

from ..config import PipelineConfig
from ..decisions import decision_path
from ..raytools import options
from ..sources import PoolTask
from ..work import staged_path
from ..writer import finish, plan_shards, remove_stale, write_shard

log = get_logger("curation")


def kept_plan(tasks: list[PoolTask], cfg: PipelineConfig, out: str) -> tuple[list[tuple[str, str]], dict]:
    """[(task_id, key)] of the kept samples in pool order, and each one's dedup scores."""
    kept: list[tuple[str, str]] = []
    extra: dict[str, dict] = {}
    for t in tasks:
        st = storage.read_parquet(staged_path(out, t.task_id), columns=["key", "order"]).to_pydict()
        keys = [k for _, k in sorted(zip(st["order"], st["key"]))]
        keep = set(keys)
        for stage, cols in (("phash", ["key", "kept", "cluster_size", "distance"]),
                            ("embedding", ["key", "kept", "cluster_size", "similarity"])):
            if not cfg.stage(stage):
                continue
            d = storage.read_parquet(decision_path(out, stage, t.task_id), columns=cols).to_pydict()
            keep &= {k for k, ok in zip(d["key"], d["kept"]) if ok}
            for i, k in enumerate(d["key"]):
                if d["cluster_size"][i] > 1:
                    extra.setdefault(k, {})[stage] = {"cluster_size": d["cluster_size"][i],
                                                      cols[3]: d[cols[3]][i]}
        kept += [(t.task_id, k) for k in keys if k in keep]
    kept_keys = {k for _, k in kept}
    return kept, {k: v for k, v in extra.items() if k in kept_keys}


def write_shards(tasks: list[PoolTask], cfg: PipelineConfig, out: str, run_info: dict) -> dict:
    """Write (or keep) every planned shard, then the index and manifest."""
    import ray

    kept, extra = kept_plan(tasks, cfg, out)
    shards = plan_shards(kept, cfg.samples_per_shard)
    removed = remove_stale(out, cfg.shard_prefix, len(shards))
    if removed:
        log.info("shards: removed stale/temporary files %s", removed)
    writer = ray.remote(write_shard).options(**options(1, scheduling_strategy="SPREAD"))
    xref, iref = ray.put(extra), ray.put(run_info)
    refs = [writer.remote(out, cfg.shard_prefix, i, members, xref, iref) for i, members in enumerate(shards)]
    records = list(progress((ray.get(r) for r in refs), desc="shards", total=len(refs), unit="shard"))
    skipped = sum(r["skipped"] for r in records)
    finish(out, records, {"pipeline": run_info.get("pipeline")})
    nodes = sorted({r["node_id"] for r in records if r.get("node_id") and not r["skipped"]})
    log.info("shards: %d written on %d node(s), %d already whole (resume), %d samples",
             len(records) - skipped, len(nodes), skipped, len(kept))
    return {"shards": len(records), "samples": len(kept), "skipped": skipped, "nodes": nodes}
