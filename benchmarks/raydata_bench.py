"""Stages 0-4 of curation three ways on one Ray instance: our task/actor loop vs two Ray Data designs.

Issue #14 asks to consider Ray Data for the per-image stages and to keep whichever design is faster and
simpler, measured. All three designs run the *same* stage code (``curation.work.filter_task`` for read,
resolution, decode and quality; ``TaskCommitter`` for person detection and framing) with the same Ray
resources (filter work 0.5 CPU, two 0.75-CPU detector actors on 2 CPUs), so what differs is only the
orchestration:

- ``ours``: ``curation.stages.filter_run.run_filter_stages``: a filter task per pool task (16 images),
  run ahead (at most 2 x actors), each finished result handed to an idle person actor, each task
  committed atomically with its done marker (resume skips it). Until 2026-12-03 the result was bound
  to an actor round robin when the filter task was submitted (see benchmarks/results/raydata.md).
- ``raydata-task``: Ray Data over the same 16-image pool tasks: ``from_items`` -> ``map(filter_task)`` ->
  ``map_batches(committer, ActorPoolStrategy)``; the same per-task commits and done markers.
- ``raydata-image``: Ray Data's natural design, one image per row: ``map`` (one-image filter) ->
  ``map_batches`` (detector actors, 8 rows per batch) -> ``write_parquet`` of the decision rows. No
  per-task commit, no staged survivors, no done markers: it writes less, and a killed run starts over.

Each design runs ``--repeats`` times, interleaved, each into a fresh folder; Ray start-up is excluded
(one ``ray.init`` for all), actor start-up (the detector load) is included for every design. The kept
sets (after framing) are compared. Prints a markdown table; ``--md`` writes it.

    python benchmarks/raydata_bench.py --scale small --repeats 2 --md benchmarks/results/raydata.md
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HUMANS_NO_PROGRESS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _kept_staged(out: str) -> set[str]:
    import pyarrow.parquet as pq

    keys: set[str] = set()
    for p in sorted(Path(out, "work", "staged").glob("*.parquet")):
        keys.update(pq.read_table(p, columns=["key"]).column("key").to_pylist())
    return keys


def run_ours(tasks, cfg, out: str) -> set[str]:
    from humans.curation.stages.filter_run import run_filter_stages

    run_filter_stages(tasks, cfg, out, 2.0)
    return _kept_staged(out)


def _committer_udf(cfg, out: str, commit: bool):
    from humans.curation.work import TaskCommitter

    class Udf(TaskCommitter):
        """The person actor of a Ray Data pipeline: detection + framing over a batch of filter results."""

        def __init__(self):
            super().__init__(cfg, out)
            self._rows: dict | None = None

        def commit(self, task_id, rows, staged):  # raydata-image: keep the rows, Ray Data writes them
            if commit:
                return super().commit(task_id, rows, staged)
            self._rows = rows
            return {"staged": len(staged)}

        def __call__(self, batch):
            results = [pickle.loads(b) for b in batch["blob"]]
            if commit:  # one pool task per row, committed like ours
                counts = [self.process(r) for r in results]
                return {"task_id": [c["task_id"] for c in counts], "staged": [c["staged"] for c in counts]}
            merged = {"task_id": "batch", "seconds": 0.0, "survivors": [s for r in results for s in r["survivors"]],
                      "rows": {k: [row for r in results for row in r["rows"][k]] for k in results[0]["rows"]}}
            self.process(merged)
            rows = [(stage, r["key"], bool(r["kept"]), r["reason"]) for stage, rs in self._rows.items() for r in rs]
            return {"stage": [r[0] for r in rows], "key": [r[1] for r in rows], "kept": [r[2] for r in rows],
                    "reason": [r[3] for r in rows]}

    return Udf


def _filter_blob(cfg):
    from humans.curation.work import filter_task

    def fn(row):
        return {"blob": pickle.dumps(filter_task(pickle.loads(row["task"]), cfg, int(row["i"])))}

    return fn


def run_raydata_task(tasks, cfg, out: str) -> set[str]:
    import ray

    person = cfg.stage("person")
    items = [{"i": i, "task": pickle.dumps(t)} for i, t in enumerate(tasks)]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map(_filter_blob(cfg), num_cpus=cfg.filter_resources.num_cpus)
    ds = ds.map_batches(_committer_udf(cfg, out, commit=True), batch_size=1, num_cpus=person.resources.num_cpus,
                        compute=ray.data.ActorPoolStrategy(size=person.resources.concurrency))
    ds.take_all()
    return _kept_staged(out)


def run_raydata_image(pool: str, cfg, out: str) -> set[str]:
    import pyarrow.parquet as pq
    import ray

    from humans.curation.sources import plan_pool

    person = cfg.stage("person")
    one = plan_pool(pool, 1)  # one image per row
    items = [{"i": i, "task": pickle.dumps(t)} for i, t in enumerate(one)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items) // 4))
    ds = ds.map(_filter_blob(cfg), num_cpus=cfg.filter_resources.num_cpus)
    ds = ds.map_batches(_committer_udf(cfg, out, commit=False), batch_size=person.resources.batch_size,
                        num_cpus=person.resources.num_cpus,
                        compute=ray.data.ActorPoolStrategy(size=person.resources.concurrency))
    ds.write_parquet(out)
    t = pq.read_table(out).to_pandas()
    last = "framing" if cfg.stage("framing") else "person"
    return set(t.loc[(t["stage"] == last) & t["kept"], "key"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", choices=("small", "demo"), help="demo pool size (108 / 453 images)")
    ap.add_argument("--pipeline", default="humans-test")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--designs", nargs="+", default=["ours", "raydata-task", "raydata-image"],
                    choices=("ours", "raydata-task", "raydata-image"))
    ap.add_argument("--md", default=None, help="write the markdown table and notes here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import ray
    from ray.data import DataContext

    from humans.curation.config import load_pipeline
    from humans.curation.demo_pool import make_demo_pool
    from humans.curation.sources import plan_pool

    cfg = load_pipeline(args.pipeline)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="raydata-") as tmp:
        pool = str(Path(make_demo_pool(Path(tmp) / "pool", scale=args.scale)) / "images")
        tasks = plan_pool(pool, cfg.items_per_task)
        n_images = sum(len(t) for t in tasks)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=512 * 2**20)
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        designs = {"ours": lambda o: run_ours(tasks, cfg, o),
                   "raydata-task": lambda o: run_raydata_task(tasks, cfg, o),
                   "raydata-image": lambda o: run_raydata_image(pool, cfg, o)}
        designs = {k: v for k, v in designs.items() if k in args.designs}
        times: dict[str, list[float]] = {k: [] for k in designs}
        kept: dict[str, set[str]] = {}
        for rep in range(args.repeats):
            for name, fn in designs.items():
                out = str(Path(tmp) / f"{name}-{rep}")
                t0 = time.perf_counter()
                keys = fn(out)
                times[name].append(time.perf_counter() - t0)
                kept.setdefault(name, keys)
                if keys != kept[name]:
                    raise SystemExit(f"{name}: kept set changed between repeats")
                print(json.dumps({"design": name, "repeat": rep, "seconds": round(times[name][-1], 2),
                                  "kept": len(keys)}), flush=True)
        ray.shutdown()
    ref = "ours" if "ours" in times else next(iter(times))
    base = statistics.median(times[ref])
    lines = [f"Machine: {platform.machine()} {os.cpu_count()}-core CPU, Python {platform.python_version()}, "
             f"Ray {ray.__version__}; load average at start {load:.1f}. Pool: the `{args.scale}` demo pool "
             f"({n_images} images, {len(tasks)} tasks of <= {cfg.items_per_task}), pipeline `{args.pipeline}`, "
             f"stages 0-4 only; {args.repeats} interleaved repeats (median).", "",
             f"| design | median s | runs (s) | images/s | vs {ref} | kept after framing | same kept set as {ref} |",
             "|---|---:|---|---:|---:|---:|---|"]
    for name, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"| {name} | {med:.1f} | {', '.join(f'{t:.1f}' for t in ts)} | {n_images / med:.2f} | "
                     f"{base / med:.2f}x | {len(kept[name])} | {'yes' if kept[name] == kept[ref] else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()
