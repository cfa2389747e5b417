"""Ray orchestration of the curation pipeline, with resume.

Phases (all work runs in Ray tasks/actors; the driver only schedules and keeps small summaries):

A. per pool task: ``filter_task`` (read, stage 1 resolution from the header, decode, stage 2
   quality) then a person actor (stage 3 detection, stage 4 framing, atomic commit of the task's
   decision parquets, staged survivors and done marker). Tasks with a marker are skipped.
B. stage 5 pHash dedup: LSH band rows shuffled by bucket to ``partitions`` reduce tasks (map one
   task per pool task, ``num_returns=partitions``), exact Hamming inside buckets, union-find on the
   driver over the duplicate edges only, decisions written per pool task.
C. stage 6 embeddings: embedding actors write ``work/emb/TASK.npz`` per pool task (skipped if there).
D. stage 6 dedup: faiss flat range search, or IVF partitions spread over reduce tasks when the pool
   has at least ``ivf_threshold`` vectors; clusters to one representative; decisions per task.
E. shards: deterministic plan, one Ray task per shard (skipped when already whole), then
   ``index.parquet``, ``manifest.json`` and ``run.json`` written atomically.

``ray.init`` connects to the cluster named by ``ray_address`` or ``RAY_ADDRESS`` (as set by
``ray job submit``); otherwise it starts a local instance on loopback, which it stops at the end.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from humans.shared.log import get_logger, progress
from humans.shared.runtime import setup_runtime
from humans.shared.schema import RUN_NAME
from humans.shared.shards import atomic_write_bytes, atomic_write_json, remove_partial_files

from .config import STAGE_DIRS, STAGE_ORDER, PipelineConfig, load_pipeline
from .decisions import read_decisions, stage_dir, write_decisions
from .preflight import check_files
from .sources import PoolTask, plan_pool
from .stages import embedding as emb_stage
from .stages import phash as phash_stage
from .stages.clusters import resolve_clusters
from .work import WORK_DIR, TaskCommitter, done_path, env_int, filter_task, staged_path
from .writer import finish, plan_shards, remove_stale, write_shard

log = get_logger("curation")
FAIL_AFTER_ENV = "HUMANS_CURATION_FAIL_AFTER_TASKS"  # fault injection: hard exit after N tasks (tests)


class PipelineStateError(RuntimeError):
    """The output folder belongs to a different pool or configuration."""


# ---------------------------------------------------------------------------------------- Ray
def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to a cluster (address / RAY_ADDRESS) or start a local one; True if we must shut it down."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        log.info("connected to Ray cluster at %s: %s", address, ray.cluster_resources())
        return True
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
             object_store_memory=int(os.environ.get("HUMANS_RAY_OBJECT_STORE_MB", "1024")) * 2**20)
    log.info("started a local Ray instance: %s", ray.cluster_resources())
    return True


def _fit_actors(want: int, cpus: float, total_cpus: float, reserve: float) -> tuple[int, float]:
    """Actors hold their CPUs for life: keep ``reserve`` CPUs free for plain tasks so none starve."""
    free = max(total_cpus - reserve, 0.0)
    n = max(1, min(want, int(free // cpus) if cpus > 0 else want))
    if cpus > 0 and n * cpus > free:
        cpus = max(free / n, 0.01) if free > 0 else 0.01
    return n, cpus


# ---------------------------------------------------------------------------------------- helpers
def _fingerprint(pool: str, pipeline: str, cfg: PipelineConfig, tasks: list[PoolTask]) -> dict:
    doc = {"pool": str(pool), "pipeline": pipeline, "config": cfg.model_dump(mode="json"),
           "tasks": [t.task_id for t in tasks]}
    return {**doc, "sha256": hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()}


def _check_state(out: Path, fp: dict) -> None:
    path = out / WORK_DIR / "plan.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("sha256") != fp["sha256"]:
            changed = [k for k in ("pool", "pipeline", "config", "tasks") if old.get(k) != fp[k]]
            raise PipelineStateError(
                f"{out} holds a run of a different {', '.join(changed) or 'plan'}; resume needs the same "
                f"pool and config (use a new --out, or delete {out} to start over)")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, fp)


def _remote(fn, res, gpu: bool = True, **kw):
    """``fn`` as a Ray remote function with the stage's resources (``gpu=False``: CPU-only work)."""
    import ray

    return ray.remote(fn).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus if gpu else 0, **kw)


def _rank(attr) -> tuple:
    pixels, nbytes, key = attr
    return (-pixels, -nbytes, key)


# ---------------------------------------------------------------------------------------- phase A
def _phase_a(tasks: list[PoolTask], cfg: PipelineConfig, out: Path, total_cpus: float) -> dict:
    import ray

    pending = [(i, t) for i, t in enumerate(tasks) if not done_path(out, t.task_id).is_file()]
    log.info("stages 0-4: %d pool tasks, %d already done (resume), %d to run",
             len(tasks), len(tasks) - len(pending), len(pending))
    if not pending:
        return {"ran": 0, "skipped": len(tasks)}
    person = cfg.stage("person")
    pres = person.resources if person else cfg.filter_resources
    n_act, act_cpus = _fit_actors(pres.concurrency, pres.num_cpus, total_cpus, cfg.filter_resources.num_cpus)
    Committer = ray.remote(TaskCommitter).options(num_cpus=act_cpus, num_gpus=pres.num_gpus)
    actors = [Committer.remote(cfg, str(out)) for _ in range(n_act)]
    filt = _remote(filter_task, cfg.filter_resources)
    log.info("stages 0-4: %d person actor(s) x %.2f CPU, filter tasks x %.2f CPU, detector %s",
             n_act, act_cpus, cfg.filter_resources.num_cpus, ray.get(actors[0].detector_name.remote()))
    fail_after = env_int(FAIL_AFTER_ENV)
    max_inflight = 2 * max(n_act, cfg.filter_resources.concurrency)
    queue = list(pending)

    def completions():
        inflight: dict = {}
        rr = 0
        while queue or inflight:
            while queue and len(inflight) < max_inflight:
                idx, task = queue.pop(0)
                ref = actors[rr % n_act].process.remote(filt.remote(task, cfg, idx))
                rr += 1
                inflight[ref] = task
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for r in ready:
                inflight.pop(r)
                yield ray.get(r)

    done = 0
    try:
        for _counts in progress(completions(), desc="stages 0-4", total=len(pending), unit="task"):
            done += 1
            if fail_after is not None and done >= fail_after:
                log.error("%s=%d: exiting hard after %d committed tasks (fault injection)",
                          FAIL_AFTER_ENV, fail_after, done)
                os._exit(75)
    finally:
        for a in actors:
            ray.kill(a)
    return {"ran": done, "skipped": len(tasks) - len(pending)}


# ---------------------------------------------------------------------------------------- phase B
def _phash_map(path: str, nbits: int, bands: int, partitions: int):
    t = pq.read_table(path, columns=["key", "phash", "width", "height", "file_bytes"]).to_pydict()
    attrs = [(w * h, b, k) for k, w, h, b in zip(t["key"], t["width"], t["height"], t["file_bytes"])]
    parts = phash_stage.band_rows(t["key"], t["phash"], nbits, bands, partitions, attrs)
    return parts[0] if partitions == 1 else tuple(parts)


def _phash_reduce(nbits: int, max_distance: int, *parts):
    return phash_stage.bucket_pairs(list(parts), nbits, max_distance)


def _phash_decide(run_dir: str, task_id: str, clusters: dict, nearest: dict) -> int:
    t = pq.read_table(staged_path(run_dir, task_id), columns=["key", "source", "phash"]).to_pydict()
    rows = []
    for key, source, h in zip(t["key"], t["source"], t["phash"]):
        rep, size = clusters.get(key, (key, 1))
        kept = rep == key
        rows.append({"key": key, "source": source, "kept": kept, "reason": "" if kept else "phash_duplicate",
                     "phash": h, "cluster_rep": rep, "cluster_size": size, "distance": nearest.get(key)})
    write_decisions(run_dir, "phash", task_id, rows)
    return len(rows)


def _dedup_done(out: Path, name: str) -> Path:
    return out / WORK_DIR / f"{name}.done.json"


def _phase_b(tasks: list[PoolTask], cfg: PipelineConfig, out: Path) -> dict:
    import ray

    st = cfg.stage("phash")
    marker = _dedup_done(out, "phash")
    if marker.is_file():
        log.info("stage 5 phash: already done (resume)")
        return json.loads(marker.read_text())
    nbits, P = st.hash_size ** 2, st.partitions
    res = st.resources
    mapper = _remote(_phash_map, res, num_returns=P)
    maps = [mapper.remote(str(staged_path(out, t.task_id)), nbits, st.bands, P) for t in tasks]
    if P == 1:
        maps = [[m] for m in maps]
    reducer = _remote(_phash_reduce, res)
    reds = [reducer.remote(nbits, st.max_distance, *[m[p] for m in maps]) for p in range(P)]
    edges, attrs = [], {}
    for e, a in progress((ray.get(r) for r in reds), desc="stage 5 phash buckets", total=P, unit="part"):
        edges.extend(e)
        attrs.update(a)
    rank = {k: _rank(a) for k, a in attrs.items()}
    clusters = resolve_clusters(((a, b) for a, b, _ in edges), rank)
    nearest: dict[str, int] = {}
    for a, b, d in edges:
        nearest[a] = min(nearest.get(a, d), d)
        nearest[b] = min(nearest.get(b, d), d)
    cref, nref = ray.put(clusters), ray.put(nearest)
    decide = _remote(_phash_decide, res)
    ray.get([decide.remote(str(out), t.task_id, cref, nref) for t in tasks])
    info = {"edges": len(edges), "clustered": len(clusters),
            "removed": sum(1 for k, (r, _) in clusters.items() if r != k)}
    atomic_write_json(marker, info)
    log.info("stage 5 phash: %d duplicate edges, %d images in clusters, %d removed", info["edges"],
             info["clustered"], info["removed"])
    return info


# ---------------------------------------------------------------------------------------- phase C/D
def emb_path(out: str | Path, task_id: str) -> Path:
    return Path(out) / WORK_DIR / "emb" / f"{task_id}.npz"


def _kept_keys(run_dir: str | Path, stage: str, task_id: str) -> set[str] | None:
    path = stage_dir(run_dir, stage) / f"{task_id}.parquet"
    if not path.is_file():
        return None
    t = pq.read_table(path, columns=["key", "kept"]).to_pydict()
    return {k for k, kept in zip(t["key"], t["kept"]) if kept}


class EmbedWorker:
    """Ray actor state: the open_clip tower, embedding one pool task's surviving images at a time."""

    def __init__(self, cfg: PipelineConfig, threads: int):
        st = cfg.stage("embedding")
        self.cfg = cfg
        self.batch = st.resources.batch_size
        self.embedder = emb_stage.Embedder(st.model, st.checkpoint, st.image_size, threads=threads,
                                           device="cuda" if st.resources.num_gpus > 0 else "cpu")

    def description(self) -> str:
        return self.embedder.description

    def process(self, run_dir: str, task_id: str) -> int:
        from humans.shared.imageio import decode_rgb

        t = pq.read_table(staged_path(run_dir, task_id), columns=["key", "data", "width", "height",
                                                                    "file_bytes"]).to_pydict()
        keep = _kept_keys(run_dir, "phash", task_id) if self.cfg.stage("phash") else None
        idx = [i for i, k in enumerate(t["key"]) if keep is None or k in keep]
        vecs = []
        for b0 in range(0, len(idx), self.batch):
            ims = [decode_rgb(t["data"][i], t["key"][i]) for i in idx[b0:b0 + self.batch]]
            vecs.append(self.embedder.embed(ims))
        dim = self.embedder.net.visual.output_dim
        x = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
        import io

        buf = io.BytesIO()
        np.savez(buf, keys=np.array([t["key"][i] for i in idx], dtype=object).astype(str), vecs=x,
                 pixels=np.array([t["width"][i] * t["height"][i] for i in idx], np.int64),
                 nbytes=np.array([t["file_bytes"][i] for i in idx], np.int64))
        path = emb_path(run_dir, task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
        return len(idx)


def _load_emb(path: str):
    z = np.load(path)
    return list(z["keys"]), z["vecs"].astype(np.float32), z["pixels"], z["nbytes"]


def _emb_flat(threshold: float, *paths):
    keys, xs, attrs = [], [], {}
    for p in paths:
        k, x, px, nb = _load_emb(p)
        keys += k
        xs.append(x)
        attrs.update({kk: (int(a), int(b), kk) for kk, a, b in zip(k, px, nb)})
    x = np.concatenate(xs) if xs else np.zeros((0, 1), np.float32)
    edges = [(keys[i], keys[j], s) for i, j, s in emb_stage.flat_edges(x, threshold)]
    return edges, {k: attrs[k] for e in edges for k in e[:2]}


def _emb_sample(n_per_file: int, seed: int, *paths):
    rng = np.random.default_rng(seed)
    out = []
    for p in paths:
        _, x, _, _ = _load_emb(p)
        if len(x):
            out.append(x[rng.choice(len(x), size=min(len(x), n_per_file), replace=False)])
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def _emb_assign(path: str, centroids: np.ndarray, nprobe: int, partitions: int):
    keys, x, px, nb = _load_emb(path)
    lists = emb_stage.assign_partitions(x, centroids, nprobe) if len(x) else np.zeros((0, nprobe), np.int64)
    parts = []
    for p in range(partitions):
        rows = [(int(l), i) for i in range(len(keys)) for l in lists[i] if l >= 0 and int(l) % partitions == p]
        sel = [i for _, i in rows]
        parts.append({"list": np.array([l for l, _ in rows], np.int64), "key": [keys[i] for i in sel],
                      "vec": x[sel] if sel else np.zeros((0, x.shape[1] if x.ndim == 2 else 1), np.float32),
                      "attr": [(int(px[i]), int(nb[i]), keys[i]) for i in sel]})
    return parts[0] if partitions == 1 else tuple(parts)


def _emb_reduce(threshold: float, *parts):
    lists = np.concatenate([p["list"] for p in parts]) if parts else np.zeros(0, np.int64)
    keys = [k for p in parts for k in p["key"]]
    attrs = [a for p in parts for a in p["attr"]]
    vecs = [p["vec"] for p in parts if len(p["vec"])]
    if not vecs:
        return [], {}
    x = np.concatenate(vecs)
    edges: dict[tuple[str, str], float] = {}
    for l in np.unique(lists):
        idx = np.flatnonzero(lists == l)
        for i, j, s in emb_stage.flat_edges(x[idx], threshold):
            a, b = keys[idx[i]], keys[idx[j]]
            if a != b:
                edges[(min(a, b), max(a, b))] = s
    attr_of = dict(zip(keys, attrs))
    out = [(a, b, s) for (a, b), s in sorted(edges.items())]
    return out, {k: attr_of[k] for e in out for k in e[:2]}


def _emb_decide(run_dir: str, task_id: str, clusters: dict, best: dict, model: str) -> int:
    z = np.load(emb_path(run_dir, task_id))
    keys = [str(k) for k in z["keys"]]
    t = pq.read_table(staged_path(run_dir, task_id), columns=["key", "source"]).to_pydict()
    source = dict(zip(t["key"], t["source"]))
    rows = []
    for key in keys:
        rep, size = clusters.get(key, (key, 1))
        kept = rep == key
        rows.append({"key": key, "source": source[key], "kept": kept,
                     "reason": "" if kept else "embedding_duplicate", "cluster_rep": rep,
                     "cluster_size": size, "similarity": best.get(key), "model": model})
    write_decisions(run_dir, "embedding", task_id, rows)
    return len(rows)


def _phase_cd(tasks: list[PoolTask], cfg: PipelineConfig, out: Path, total_cpus: float) -> dict:
    import ray

    st = cfg.stage("embedding")
    marker = _dedup_done(out, "embedding")
    if marker.is_file():
        log.info("stage 6 embedding: already done (resume)")
        return json.loads(marker.read_text())
    res = st.resources
    pending = [t for t in tasks if not emb_path(out, t.task_id).is_file()]
    n_act, act_cpus = _fit_actors(res.concurrency, res.num_cpus, total_cpus, 0.0)
    description = None
    if pending:
        Worker = ray.remote(EmbedWorker).options(num_cpus=act_cpus, num_gpus=res.num_gpus)
        actors = [Worker.remote(cfg, max(1, int(act_cpus))) for _ in range(n_act)]
        description = ray.get(actors[0].description.remote())
        log.info("stage 6 embedding: %d actor(s), model %s, %d tasks to embed (%d done before)",
                 n_act, description, len(pending), len(tasks) - len(pending))
        if "RANDOM INIT" in description:
            log.warning("stage 6 embedding: the embedding model is RANDOMLY INITIALISED (no checkpoint "
                        "given): near-duplicates are found from pixel-level similarity only; pass "
                        "--embedding-checkpoint for a trained open_clip model")
        refs = [actors[i % n_act].process.remote(str(out), t.task_id) for i, t in enumerate(pending)]
        try:
            for _ in progress((ray.get(r) for r in refs), desc="stage 6 embed", total=len(refs), unit="task"):
                pass
        finally:
            for a in actors:
                ray.kill(a)
    if description is None:
        description = (f"open_clip {st.model} RANDOM INIT seed 0 (no checkpoint given; no semantics)"
                       if not st.checkpoint else f"open_clip {st.model} from {st.checkpoint}")
    paths = [str(emb_path(out, t.task_id)) for t in tasks]
    n = sum(len(np.load(p)["keys"]) for p in paths)
    cpu1 = _remote(_emb_flat, res, gpu=False)
    t0 = time.perf_counter()
    if n < st.ivf_threshold:
        edges, attrs = ray.get(cpu1.remote(st.threshold, *paths))
        info: dict[str, Any] = {"index": "flat", "vectors": n}
    else:
        nlist = st.nlist or emb_stage.default_nlist(n)
        per_file = max(1, st.kmeans_sample // max(1, len(paths)))
        sample = ray.get(_remote(_emb_sample, res, gpu=False).remote(per_file, 0, *paths))
        centroids = emb_stage.train_centroids(sample, nlist)
        cref = ray.put(centroids)
        P = st.partitions
        assign = _remote(_emb_assign, res, gpu=False, num_returns=P)
        maps = [assign.remote(p, cref, st.nprobe, P) for p in paths]
        if P == 1:
            maps = [[m] for m in maps]
        red = _remote(_emb_reduce, res, gpu=False)
        reds = [red.remote(st.threshold, *[m[p] for m in maps]) for p in range(P)]
        edges, attrs = [], {}
        for e, a in progress((ray.get(r) for r in reds), desc="stage 6 IVF partitions", total=P, unit="part"):
            edges.extend(e)
            attrs.update(a)
        info = {"index": "ivf", "vectors": n, "nlist": int(len(centroids)), "nprobe": st.nprobe,
                "partitions": P}
    clusters = resolve_clusters(((a, b) for a, b, _ in edges), {k: _rank(a) for k, a in attrs.items()})
    best: dict[str, float] = {}
    for a, b, s in edges:
        best[a] = max(best.get(a, s), s)
        best[b] = max(best.get(b, s), s)
    decide = _remote(_emb_decide, res, gpu=False)
    ray.get([decide.remote(str(out), t.task_id, ray.put(clusters), ray.put(best), description) for t in tasks])
    info.update(edges=len(edges), clustered=len(clusters), model=description,
                removed=sum(1 for k, (r, _) in clusters.items() if r != k),
                search_seconds=round(time.perf_counter() - t0, 3))
    atomic_write_json(marker, info)
    log.info("stage 6 embedding: %s search over %d vectors, %d edges, %d removed", info["index"], n,
             info["edges"], info["removed"])
    return info


# ---------------------------------------------------------------------------------------- phase E
def _kept_plan(tasks: list[PoolTask], cfg: PipelineConfig, out: Path) -> tuple[list[tuple[str, str]], dict]:
    kept: list[tuple[str, str]] = []
    extra: dict[str, dict] = {}
    for t in tasks:
        st = pq.read_table(staged_path(out, t.task_id), columns=["key", "order"]).to_pydict()
        keys = [k for _, k in sorted(zip(st["order"], st["key"]))]
        keep = set(keys)
        for stage, cols in (("phash", ["key", "kept", "cluster_size", "distance"]),
                            ("embedding", ["key", "kept", "cluster_size", "similarity"])):
            if not cfg.stage(stage):
                continue
            d = pq.read_table(stage_dir(out, stage) / f"{t.task_id}.parquet", columns=cols).to_pydict()
            keep &= {k for k, ok in zip(d["key"], d["kept"]) if ok}
            for i, k in enumerate(d["key"]):
                if d["cluster_size"][i] > 1:
                    extra.setdefault(k, {})[stage] = {"cluster_size": d["cluster_size"][i],
                                                      cols[3]: d[cols[3]][i]}
        kept += [(t.task_id, k) for k in keys if k in keep]
    return kept, {k: v for k, v in extra.items() if k in {kk for _, kk in kept}}


def _phase_e(tasks, cfg: PipelineConfig, out: Path, run_info: dict) -> dict:
    import ray

    kept, extra = _kept_plan(tasks, cfg, out)
    shards = plan_shards(kept, cfg.samples_per_shard)
    removed = remove_stale(out, cfg.shard_prefix, len(shards))
    if removed:
        log.info("shards: removed stale/temporary files %s", removed)
    writer = ray.remote(write_shard).options(num_cpus=1)
    xref, iref = ray.put(extra), ray.put(run_info)
    refs = [writer.remote(str(out), cfg.shard_prefix, i, members, xref, iref) for i, members in enumerate(shards)]
    records = list(progress((ray.get(r) for r in refs), desc="shards", total=len(refs), unit="shard"))
    skipped = sum(r["skipped"] for r in records)
    finish(out, records, {"pipeline": run_info.get("pipeline")})
    log.info("shards: %d written, %d already whole (resume), %d samples", len(records) - skipped, skipped,
             len(kept))
    return {"shards": len(records), "samples": len(kept), "skipped": skipped}


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

    Returns a summary: per-stage in/out counts, shards, samples, seconds per phase.
    """
    setup_runtime()
    t_start = time.perf_counter()
    # Everything the run needs is checked before the output folder is made and before Ray starts:
    # the config (at load), the pool (planning), every file the config names (preflight).
    cfg = load_pipeline(pipeline, config_path, overrides)
    tasks = plan_pool(str(pool), cfg.items_per_task)
    for what in check_files(cfg):
        log.info("checked %s", what)
    outp = Path(out)
    if outp.exists() and not outp.is_dir():
        raise PipelineStateError(f"--output {out} exists and is not a folder")
    outp.mkdir(parents=True, exist_ok=True)
    log.info("pipeline %r: pool %s -> %s, %d tasks of <= %d items", pipeline, pool, out, len(tasks),
             cfg.items_per_task)
    _check_state(outp, _fingerprint(pool, pipeline, cfg, tasks))
    stale = remove_partial_files(outp)
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run: %s", len(stale), stale[:5])
    import ray
    started = init_ray(ray_address, num_cpus)
    seconds: dict[str, float] = {}
    try:
        total_cpus = float(ray.cluster_resources().get("CPU", 1))
        t = time.perf_counter()
        phase_a = _phase_a(tasks, cfg, outp, total_cpus)
        seconds["stages_0_4"] = time.perf_counter() - t
        phash_info = emb_info = None
        if cfg.stage("phash"):
            t = time.perf_counter()
            phash_info = _phase_b(tasks, cfg, outp)
            seconds["phash"] = time.perf_counter() - t
        if cfg.stage("embedding"):
            t = time.perf_counter()
            emb_info = _phase_cd(tasks, cfg, outp, total_cpus)
            seconds["embedding"] = time.perf_counter() - t
        detector = None
        for f in sorted(stage_dir(outp, "person").glob("*.parquet"))[:1]:
            col = pq.read_table(f, columns=["detector"]).column("detector").to_pylist()
            detector = next((d for d in col if d), None)
        run_info = {"pipeline": pipeline, "embedding_model": (emb_info or {}).get("model"),
                    "detector": detector}
        t = time.perf_counter()
        phase_e = _phase_e(tasks, cfg, outp, run_info)
        seconds["shards"] = time.perf_counter() - t
    finally:
        if started:
            ray.shutdown()
    seconds["total"] = time.perf_counter() - t_start
    summary = {"pipeline": pipeline, "pool": str(pool), "out": str(out), "tasks": len(tasks),
               "tasks_resumed": phase_a["skipped"], "stages": stage_counts(outp, cfg),
               "shards": phase_e["shards"], "samples": phase_e["samples"],
               "shards_skipped": phase_e["skipped"], "detector": detector,
               "embedding": emb_info, "phash": phash_info,
               "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    atomic_write_json(outp / RUN_NAME, {**summary, "config": cfg.model_dump(mode="json")})
    log.info("done: %d samples in %d shards (%.1fs)", summary["samples"], summary["shards"], seconds["total"])
    return summary
