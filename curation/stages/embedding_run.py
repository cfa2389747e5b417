"""Stage 6 on Ray, embedding grouping: embedding actors write ``work/emb/TASK.npz`` per pool task
(skipped when there; from the small copies the person actor staged, decoding only where there is none),
then near-duplicate search over all vectors (PCA-whitened, ``fit_whitening``) with the one
implementation in ``stages.embedding``: exact (``flat_edges``) below ``ivf_threshold`` vectors, else
IVF: centroids trained on a sample (``train_centroids``), every vector assigned to its ``nprobe`` lists
(``assign_partitions``, map tasks), lists spread over ``partitions`` reduce tasks that each run
``partitioned_edges`` on their lists. Clusters keep one representative; decisions per pool task.
"""
from __future__ import annotations

import io
import time
import zipfile
from typing import Any

import numpy as np

from humans.shared import storage
from humans.shared.log import get_logger, progress

from ..config import PipelineConfig
from ..decisions import EMBED_COLUMNS, decision_path, write_decisions
from ..raytools import PhaseClock, assigned_device, batches, fit_actors, options, remote
from ..sources import PoolTask
from ..work import staged_path, work_path
from . import embedding as emb_stage
from .clusters import rank_of, resolve_clusters

log = get_logger("curation")


def emb_path(out: str, task_id: str) -> str:
    return work_path(out, "emb", f"{task_id}.npz")


def _kept_keys(run_dir: str, stage: str, task_id: str) -> set[str] | None:
    path = decision_path(run_dir, stage, task_id)
    if not storage.is_file(path):
        return None
    t = storage.read_parquet(path, columns=["key", "kept"]).to_pydict()
    return {k for k, kept in zip(t["key"], t["kept"]) if kept}


def staged_columns(path: str) -> dict[str, list]:
    """The staged columns the embedder needs: the embedding copies the person actor kept, and the stored
    bytes only where a copy is missing (open_clip, small images, or a task staged before copies existed)."""
    import pyarrow.parquet as pq

    with storage.open_input(path) as fh:
        pf = pq.ParquetFile(fh)
        has_copy = all(c in pf.schema_arrow.names for c in EMBED_COLUMNS)
        cols = ["key", "width", "height", "file_bytes"] + (list(EMBED_COLUMNS) if has_copy else [])
        t = pf.read(columns=cols).to_pydict()
        if not has_copy or any(p is None for p in t["embed_pixels"]):
            t["data"] = pf.read(columns=["data"]).column("data").to_pylist()
    if not has_copy:
        t["embed_pixels"] = [None] * len(t["key"])
    return t


def staged_image(t: dict[str, list], i: int, size: int) -> np.ndarray:
    """Row ``i``'s pixels for an embedder of input ``size``: its embedding copy, else a reduced decode of its
    bytes (a JPEG decodes at the coarsest DCT scale, up to 1/8, that keeps its long side >= 4 x size)."""
    if t["embed_pixels"][i] is not None:
        h, w = int(t["embed_height"][i]), int(t["embed_width"][i])
        return np.frombuffer(t["embed_pixels"][i], np.uint8).reshape(h, w, 3)
    from humans.shared.imageio import decode_rgb_reduced

    return decode_rgb_reduced(t["data"][i], t["key"][i], 4 * int(size), max_scale=8)[0]


class EmbedWorker:
    """Ray actor state: the image tower on the device Ray gave this actor, one pool task at a time."""

    def __init__(self, cfg: PipelineConfig, threads: int):
        st = cfg.stage("embedding")
        self.cfg = cfg
        self.batch = st.resources.batch_size
        self.embedder = emb_stage.build_embedder(st, threads=threads, device=assigned_device(st.resources.num_gpus))

    def description(self) -> str:
        return self.embedder.description

    def process(self, run_dir: str, task_id: str) -> int:
        t = staged_columns(staged_path(run_dir, task_id))
        keep = _kept_keys(run_dir, "phash", task_id) if self.cfg.stage("phash") else None
        idx = [i for i, k in enumerate(t["key"]) if keep is None or k in keep]
        vecs = []
        for b0 in range(0, len(idx), self.batch):
            ims = [staged_image(t, i, self.embedder.size) for i in idx[b0:b0 + self.batch]]
            vecs.append(self.embedder.embed(ims))
        x = np.concatenate(vecs) if vecs else np.zeros((0, self.embedder.dim), np.float32)
        v = self.embedder.views_per_image  # rows per image: a key appears once per view
        buf = io.BytesIO()
        np.savez(buf, keys=np.repeat(np.array([t["key"][i] for i in idx], dtype=object).astype(str), v), vecs=x,
                 pixels=np.repeat(np.array([t["width"][i] * t["height"][i] for i in idx], np.int64), v),
                 nbytes=np.repeat(np.array([t["file_bytes"][i] for i in idx], np.int64), v))
        storage.write_bytes(emb_path(run_dir, task_id), buf.getvalue())
        return len(idx)


def _key_edges(keys: list[str], found) -> list[tuple[str, str, float]]:
    """Vector-pair edges as key-pair edges: views of one image are not pairs; a key pair met by several
    view pairs appears once, with its highest similarity."""
    best: dict[tuple[str, str], float] = {}
    for i, j, s in found:
        a, b = keys[i], keys[j]
        if a != b:
            pair = (a, b) if a < b else (b, a)
            best[pair] = max(best.get(pair, s), s)
    return [(a, b, s) for (a, b), s in best.items()]


def load_emb(path: str):
    """(keys, vectors, pixels, bytes) of one ``work/emb/TASK.npz`` (a key once per view of its image)."""
    z = np.load(io.BytesIO(storage.read_bytes(path)))
    return list(z["keys"]), z["vecs"].astype(np.float32), z["pixels"], z["nbytes"]


def npz_rows(path: str) -> int:
    """Rows of ``vecs`` in one vector file, from the ``.npy`` header inside the npz: the vectors themselves
    are not read (a seekable handle: a local file, or ranged reads from an object store)."""
    with storage.open_input(path) as fh, zipfile.ZipFile(fh) as zf, zf.open("vecs.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape = np.lib.format.read_array_header_1_0(member)[0]
        elif version == (2, 0):
            shape = np.lib.format.read_array_header_2_0(member)[0]
        else:  # pragma: no cover - np.savez writes 1.0 (2.0 for huge headers)
            return len(load_emb(path)[1])
    return int(shape[0]) if shape else 0


def _rows(*paths) -> int:
    return sum(npz_rows(p) for p in paths)


def count_vectors(paths: list[str], res, chunk: int = 512) -> int:
    """Vectors over all vector files, counted by Ray tasks from the files' headers (the driver reads none)."""
    import ray

    rows = remote(_rows, res, gpu=False)
    return sum(ray.get([rows.remote(*paths[i:i + chunk]) for i in range(0, len(paths), chunk)]))


def _flat(threshold: float, whiten: tuple[int, float], *paths):
    """Exact search over every vector, whitened with a whitening fitted on them all (when enough)."""
    keys, xs, attrs = [], [], {}
    for p in paths:
        k, x, px, nb = load_emb(p)
        keys += k
        xs.append(x)
        attrs.update({kk: (int(a), int(b), kk) for kk, a, b in zip(k, px, nb)})
    x = np.concatenate(xs) if xs else np.zeros((0, 1), np.float32)
    w = emb_stage.fit_whitening(x, *whiten)
    if w is not None:
        x = w.apply(x)
    edges = _key_edges(keys, emb_stage.flat_edges(x, threshold))
    return edges, {k: attrs[k] for e in edges for k in e[:2]}, (0 if w is None else w.proj.shape[1])


def _sample(n_per_file: int, seed: int, *paths):
    rng = np.random.default_rng(seed)
    out = []
    for p in paths:
        _, x, _, _ = load_emb(p)
        if len(x):
            out.append(x[rng.choice(len(x), size=min(len(x), n_per_file), replace=False)])
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def _assign(path: str, centroids: np.ndarray, nprobe: int, partitions: int, whitening=None):
    """Map: this task's vectors (whitened when ``whitening``) with their ``nprobe`` lists, sent to the
    partitions owning a list."""
    keys, x, px, nb = load_emb(path)
    if whitening is not None:
        x = whitening.apply(x)
    lists = emb_stage.assign_partitions(x, centroids, nprobe) if len(x) else np.zeros((0, nprobe), np.int64)
    owner = np.where(lists >= 0, lists % partitions, -1)  # the partition owning each of a vector's lists
    parts = []
    for p in range(partitions):
        sel = np.nonzero((owner == p).any(axis=1))[0]
        parts.append({"key": [keys[i] for i in sel], "lists": lists[sel].astype(np.int64),
                      "vec": x[sel] if len(sel) else np.zeros((0, x.shape[1] if x.ndim == 2 else 1), np.float32),
                      "attr": [(int(px[i]), int(nb[i]), keys[i]) for i in sel]})
    return parts[0] if partitions == 1 else tuple(parts)


def _reduce(threshold: float, partition: int, partitions: int, *parts):
    """Reduce: ``partitioned_edges`` over the lists this partition owns (other lists are masked)."""
    keys = [k for p in parts for k in p["key"]]
    if not keys:
        return [], {}
    x = np.concatenate([p["vec"] for p in parts if len(p["key"])])
    lists = np.concatenate([p["lists"] for p in parts if len(p["key"])])
    # a list owned by another partition (or an empty slot, -1) becomes a list of its own with one
    # member: partitioned_edges finds no pair there, so each pair is searched by exactly one partition
    mine = (lists >= 0) & (lists % partitions == partition)
    lists = np.where(mine, lists, -1 - np.arange(lists.size).reshape(lists.shape))
    edges = _key_edges(keys, emb_stage.partitioned_edges(x, lists, threshold))
    attr_of = dict(zip(keys, [a for p in parts for a in p["attr"]]))
    return edges, {k: attr_of[k] for e in edges for k in e[:2]}


def _decide(run_dir: str, task_ids: list[str], clusters: dict, best: dict, model: str) -> int:
    return sum(_decide_one(run_dir, task_id, clusters, best, model) for task_id in task_ids)


def _decide_one(run_dir: str, task_id: str, clusters: dict, best: dict, model: str) -> int:
    keys = list(dict.fromkeys(str(k) for k in load_emb(emb_path(run_dir, task_id))[0]))  # one row per image
    t = storage.read_parquet(staged_path(run_dir, task_id), columns=["key", "source"]).to_pydict()
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


def embed_tasks(tasks: list[PoolTask], cfg: PipelineConfig, out: str, total_cpus: float) -> tuple[str, float | None]:
    """Embed every pool task without a vector file yet; returns the model's description and the seconds of
    start-up (``raytools.PhaseClock``; None when too few tasks ran)."""
    import ray

    st = cfg.stage("embedding")
    res = st.resources
    pending = [t for t in tasks if not storage.is_file(emb_path(out, t.task_id))]
    if not pending:
        return emb_stage.describe(st), None
    clock = PhaseClock()
    n_act, act_cpus = fit_actors(res.concurrency, res.num_cpus, total_cpus, 0.0)
    Worker = ray.remote(EmbedWorker).options(**options(act_cpus, res.num_gpus))
    actors = [Worker.remote(cfg, max(1, int(act_cpus))) for _ in range(n_act)]
    description = ray.get(actors[0].description.remote())
    log.info("stage 6 embedding: %d actor(s), model %s, %d tasks to embed (%d done before)",
             n_act, description, len(pending), len(tasks) - len(pending))
    if "RANDOM INIT" in description:
        log.warning("stage 6 embedding: the embedding model is RANDOMLY INITIALISED (embedding.random_init): "
                    "near-duplicates are found from pixel-level similarity only; pass --embedding-backbone "
                    "for our pretrained backbone or --embedding-checkpoint for an open_clip model")
    refs = [actors[i % n_act].process.remote(out, t.task_id) for i, t in enumerate(pending)]

    def completions():
        left = list(refs)
        while left:
            ready, left = ray.wait(left, num_returns=1)
            yield ray.get(ready[0])

    try:
        for _ in progress(completions(), desc="stage 6 embed", total=len(refs), unit="task"):
            clock.tick()
    finally:
        for a in actors:
            ray.kill(a)
    return description, clock.startup_s()


def search_edges(paths: list[str], cfg: PipelineConfig) -> tuple[list, dict, dict[str, Any]]:
    """Near-duplicate edges over the vector files ``paths``: flat or IVF spread over Ray tasks."""
    import ray

    st = cfg.stage("embedding")
    res = st.resources
    n = count_vectors(paths, res)  # used to load every vector file on the driver just to count
    whiten = (st.whiten_dims, st.whiten_shrink)
    if n < st.ivf_threshold:
        edges, attrs, dims = ray.get(remote(_flat, res, gpu=False).remote(st.threshold, whiten, *paths))
        return edges, attrs, {"index": "flat", "vectors": n, "whitening_dims": dims}
    nlist = st.nlist or emb_stage.default_nlist(n)
    per_file = max(1, st.kmeans_sample // max(1, len(paths)))
    sample = ray.get(remote(_sample, res, gpu=False).remote(per_file, 0, *paths))
    whitening = emb_stage.fit_whitening(sample, *whiten)
    if whitening is not None:
        sample = whitening.apply(sample)
    centroids = emb_stage.train_centroids(sample, nlist)
    cref, wref = ray.put(centroids), ray.put(whitening)
    P = st.partitions
    assign = remote(_assign, res, gpu=False, num_returns=P)
    maps = [assign.remote(p, cref, st.nprobe, P, wref) for p in paths]
    if P == 1:
        maps = [[m] for m in maps]
    red = remote(_reduce, res, gpu=False)
    reds = [red.remote(st.threshold, p, P, *[m[p] for m in maps]) for p in range(P)]
    edges, attrs = [], {}
    for e, a in progress((ray.get(r) for r in reds), desc="stage 6 IVF partitions", total=P, unit="part"):
        edges.extend(e)
        attrs.update(a)
    return edges, attrs, {"index": "ivf", "vectors": n, "nlist": int(len(centroids)), "nprobe": st.nprobe,
                          "partitions": P, "whitening_dims": 0 if whitening is None else whitening.proj.shape[1]}


def group_embeddings(tasks: list[PoolTask], cfg: PipelineConfig, out: str, total_cpus: float) -> dict:
    """Stage 6: embed, search, cluster, decide; returns the summary in ``work/embedding.done.json``."""
    import ray

    marker = work_path(out, "embedding.done.json")
    if storage.is_file(marker):
        log.info("stage 6 embedding: already done (resume)")
        return {**storage.read_json(marker), "startup_s": None}  # this run started no actors
    res = cfg.stage("embedding").resources
    description, startup_s = embed_tasks(tasks, cfg, out, total_cpus)
    t0 = time.perf_counter()
    edges, attrs, info = search_edges([emb_path(out, t.task_id) for t in tasks], cfg)
    clusters = resolve_clusters(((a, b) for a, b, _ in edges), {k: rank_of(a) for k, a in attrs.items()})
    best: dict[str, float] = {}
    for a, b, s in edges:
        best[a] = max(best.get(a, s), s)
        best[b] = max(best.get(b, s), s)
    decide = remote(_decide, res, gpu=False)
    cref, bref = ray.put(clusters), ray.put(best)
    ray.get([decide.remote(out, [t.task_id for t in g], cref, bref, description) for g in batches(tasks)])
    info.update(edges=len(edges), clustered=len(clusters), model=description,
                removed=sum(1 for k, (r, _) in clusters.items() if r != k),
                search_seconds=round(time.perf_counter() - t0, 3), startup_s=startup_s)
    storage.write_json(marker, info)
    log.info("stage 6 embedding: %s search over %d vectors, %d edges, %d removed", info["index"],
             info["vectors"], info["edges"], info["removed"])
    return info
