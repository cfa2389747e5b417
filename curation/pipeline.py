"""The curation pipeline as a plan: check everything, then run the steps of ``PLAN`` in order on Ray.

    PLAN (each step's Ray work lives with its stage, under ``curation/stages/``):
      1. stages 0-4  read, resolution, quality, person, framing per pool task  stages/filter_run.py
      2. phash       stage 5: pHash grouping (LSH buckets, exact Hamming)        stages/phash_run.py
      3. embedding   stage 6: embed, then flat or IVF near-duplicate grouping    stages/embedding_run.py
      4. shards      WebDataset shards, index.parquet, manifest.json             stages/shards_run.py

Before any step: paths are resolved on the driver (``raytools.resolve_location``: a relative path
becomes absolute, or is refused under ``ray job submit``), ``person.detector: auto`` is resolved to
one detector for every node, the config, the pool and every file the
config names are checked, and the output folder is matched against the plan it was started with
(resume needs the same pool and config). Every step commits its outputs atomically and skips what
is already there, so rerunning the same command resumes. The output (and the pool) may be a local
path or an object-store URI (``shared.storage``); Ray workers get the driver's object-store and
``HUMANS_*`` environment (``raytools.worker_env``).

``ray.init`` connects to the cluster named by ``ray_address`` or ``RAY_ADDRESS`` (as set by
``ray job submit``); otherwise it starts a local instance on loopback, which it stops at the end.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from humans.shared import storage
from humans.shared.log import get_logger
from humans.shared.runtime import setup_runtime
from humans.shared.schema import RUN_NAME
from humans.shared.shards import remove_partial_files

from .config import STAGE_DIRS, STAGE_ORDER, PipelineConfig, load_pipeline
from .decisions import read_decisions, stage_dir
from .detectors import resolve_kind
from .preflight import check_files
from .raytools import init_ray, resolve_location
from .sources import PoolTask, plan_pool
from .stages.embedding_run import group_embeddings
from .stages.filter_run import FAIL_AFTER_ENV, run_filter_stages
from .stages.phash_run import group_phash
from .stages.shards_run import write_shards
from .work import work_path

log = get_logger("curation")
__all__ = ["FAIL_AFTER_ENV", "PLAN", "PipelineStateError", "init_ray", "run_pipeline", "stage_counts"]


class PipelineStateError(RuntimeError):
    """The output folder belongs to a different pool or configuration."""


@dataclass
class Run:
    """What the steps share: the planned pool tasks, the config, the output and the results so far."""

    tasks: list[PoolTask]
    cfg: PipelineConfig
    out: str
    pipeline: str
    total_cpus: float
    results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    run: Callable[[Run], dict]
    enabled: Callable[[PipelineConfig], bool] = lambda cfg: True


def _run_info(r: Run) -> dict:
    """What every sample's metadata records about the run (the pipeline, the models used)."""
    detector = _detector(r.out)
    r.results["detector"] = detector
    return {"pipeline": r.pipeline, "embedding_model": (r.results.get("embedding") or {}).get("model"),
            "detector": detector}


PLAN: tuple[Step, ...] = (
    Step("stages_0_4", "read, resolution, quality, person, framing per pool task",
         lambda r: run_filter_stages(r.tasks, r.cfg, r.out, r.total_cpus)),
    Step("phash", "stage 5: pHash grouping", lambda r: group_phash(r.tasks, r.cfg, r.out),
         lambda cfg: cfg.stage("phash") is not None),
    Step("embedding", "stage 6: embedding grouping", lambda r: group_embeddings(r.tasks, r.cfg, r.out, r.total_cpus),
         lambda cfg: cfg.stage("embedding") is not None),
    Step("shards", "WebDataset shards, index, manifest",
         lambda r: write_shards(r.tasks, r.cfg, r.out, _run_info(r))),
)


# ---------------------------------------------------------------------------------------- checks
def _fingerprint(pool: str, pipeline: str, cfg: PipelineConfig, tasks: list[PoolTask]) -> dict:
    return {"pool": str(pool), "pipeline": pipeline, "config": cfg.model_dump(mode="json"),
            "tasks": [t.task_id for t in tasks]}


def _without_resources(config: dict | None) -> dict | None:
    """The config minus its Ray resources (CPUs, GPUs, batch sizes, concurrency): they decide where and how
    fast the work runs, not what it decides, so a run may resume on another layout or cluster."""
    if not isinstance(config, dict):
        return config
    out = {k: v for k, v in config.items() if k != "filter_resources"}
    out["stages"] = [{k: v for k, v in st.items() if k != "resources"} for st in config.get("stages", [])]
    return out


def _auto_as_resolved(plan: dict) -> dict:
    """``plan`` with ``person.detector: auto`` read as the detector ``auto`` resolves to on this machine: plans
    written before the driver resolved it name ``auto``, and such a run resumes under the same detector."""
    config = plan.get("config")
    if not isinstance(config, dict):
        return plan
    stages = [{**st, "detector": resolve_kind(SimpleNamespace(detector="auto", weights=st.get("weights")))}
              if st.get("name") == "person" and st.get("detector") == "auto" else st
              for st in config.get("stages", [])]
    return {**plan, "config": {**config, "stages": stages}}


def _check_state(out: str, fp: dict) -> None:
    path = work_path(out, "plan.json")
    if storage.is_file(path):
        old = _auto_as_resolved(storage.read_json(path))
        changed = [k for k in ("pool", "pipeline", "tasks") if old.get(k) != fp[k]]
        if _without_resources(old.get("config")) != _without_resources(_auto_as_resolved(fp)["config"]):
            changed.append("config")
        if changed:
            raise PipelineStateError(
                f"{out} holds a run of a different {', '.join(changed)}; resume needs the same "
                f"pool and config (use a new --out, or delete {out} to start over)")
    else:
        storage.write_json(path, fp)


def _detector(out: str) -> str | None:
    folder = stage_dir(out, "person")
    for rel, _ in storage.list_files(folder)[:1]:
        col = storage.read_parquet(storage.join(folder, rel), columns=["detector"]).column("detector").to_pylist()
        return next((d for d in col if d), None)
    return None


# ---------------------------------------------------------------------------------------- summary
def stage_counts(out: str | Path, cfg: PipelineConfig | None = None) -> dict[str, dict]:
    """Per stage: rows in, rows kept, rejections by reason (from the decision parquets)."""
    counts = {}
    for stage in ("read",) + STAGE_ORDER:
        if cfg is not None and stage != "read" and not cfg.stage(stage):
            continue
        df = read_decisions(out, stage, columns=["kept", "reason"])
        counts[STAGE_DIRS[stage]] = {"in": int(len(df)), "out": int(df["kept"].sum()) if len(df) else 0,
                                     "rejected": dict(Counter(df.loc[~df["kept"].astype(bool), "reason"]))}
    return counts


def run_pipeline(pool: str, out: str, pipeline: str = "humans", config_path: str | None = None,
                 ray_address: str | None = None, num_cpus: int | None = None,
                 overrides: dict | None = None) -> dict:
    """Curate ``pool`` into WebDataset shards under ``out``; rerunning on the same ``out`` resumes.

    ``pool`` and ``out`` are local paths or object-store URIs (``s3://bucket/prefix``). Returns a
    summary: per-stage in/out counts, shards, samples, seconds per step.
    """
    setup_runtime()
    t_start = time.perf_counter()
    # Paths are resolved here, on the driver: workers on other nodes get absolute paths or URIs.
    pool, out = resolve_location(pool, "--input"), resolve_location(out, "--out")
    # Everything the run needs is checked before the output folder is made and before Ray starts:
    # the config (at load), the pool (planning), every file the config names (preflight).
    cfg = load_pipeline(pipeline, config_path, overrides)
    emb = cfg.stage("embedding")
    if emb is not None and emb.backbone:  # every embedding actor, on any node, loads it by this path
        emb.backbone = resolve_location(emb.backbone, "--embedding-backbone")
    person = cfg.stage("person")
    if person is not None and person.detector == "auto":  # resolved once, here: every node runs this detector
        person.detector = resolve_kind(person)
    tasks = plan_pool(pool, cfg.items_per_task)
    for what in check_files(cfg):
        log.info("checked %s", what)
    if storage.is_file(out):
        raise PipelineStateError(f"--out {out} exists and is not a folder")
    storage.makedirs(out)
    log.info("pipeline %r: pool %s -> %s, %d tasks of <= %d items", pipeline, pool, out, len(tasks),
             cfg.items_per_task)
    _check_state(out, _fingerprint(pool, pipeline, cfg, tasks))
    if not storage.is_remote(out):  # an object store never shows a partial object: nothing to clean
        stale = remove_partial_files(out)
        if stale:
            log.info("removed %d temporary file(s) left by an interrupted run: %s", len(stale), stale[:5])
    import ray

    started = init_ray(ray_address, num_cpus)
    seconds: dict[str, float] = {}
    try:
        run = Run(tasks, cfg, out, pipeline, float(ray.cluster_resources().get("CPU", 1)))
        for step in PLAN:
            if step.enabled(cfg):
                t = time.perf_counter()
                run.results[step.name] = step.run(run)
                seconds[step.name] = time.perf_counter() - t
    finally:
        if started:
            ray.shutdown()
    seconds["total"] = time.perf_counter() - t_start
    res = run.results
    summary = {"pipeline": pipeline, "pool": pool, "out": out, "tasks": len(tasks),
               "tasks_resumed": res["stages_0_4"]["skipped"], "stages": stage_counts(out, cfg),
               "shards": res["shards"]["shards"], "samples": res["shards"]["samples"],
               "shards_skipped": res["shards"]["skipped"], "shard_nodes": res["shards"]["nodes"],
               "detector": res.get("detector"), "embedding": res.get("embedding"), "phash": res.get("phash"),
               "seconds": {k: round(v, 3) for k, v in seconds.items()},
               # of those, start-up (actors loading models, workers importing): raytools.PhaseClock
               "startup_seconds": {k: v for k, v in (("stages_0_4", res["stages_0_4"].get("startup_s")),
                                                      ("embedding", (res.get("embedding") or {}).get("startup_s")))
                                   if v is not None}}
    storage.write_json(storage.join(out, RUN_NAME), {**summary, "config": cfg.model_dump(mode="json")})
    log.info("done: %d samples in %d shards (%.1fs; start-up of the actors %.1fs, see startup_seconds in %s)",
             summary["samples"], summary["shards"], seconds["total"], sum(summary["startup_seconds"].values()),
             RUN_NAME)
    return summary
