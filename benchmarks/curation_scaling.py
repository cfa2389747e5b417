"""Curation throughput at 1, 2 and 4 Ray worker processes on one machine.

Each run is a fresh driver process (its own local Ray instance with ``--threads N``) curating the same
demo pool with the ``humans-test`` pipeline (all six stages) into a new folder, with every stage's
``concurrency`` set to N, so N filter tasks / person actors / embedding actors can run at once. Prints
one JSON line per run (images in, seconds per step, images/s) and, with ``--md``, a markdown table.

``--nodes`` times the same pipeline on a Ray cluster of several nodes on this machine
(``ray.cluster_utils.Cluster``: each node its own raylet and object store, tasks and actors spread over
them, results moved between object stores) against one node with the same CPUs in all: ``2x1`` is two
nodes of one CPU each. The layout gives filter tasks 0.25 CPU so that one fits beside each node's
0.75-CPU detector actor.

    python benchmarks/curation_scaling.py --workers 1 2 4 --md benchmarks/results/curation_scaling.md
    python benchmarks/curation_scaling.py --nodes 1x2 2x1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(pool: str, out: str, n: int, pipeline: str) -> dict:
    sets = [f"filter_resources.concurrency={n}", f"person.resources.concurrency={n}",
            f"embedding.resources.concurrency={n}", f"phash.resources.concurrency={n}"]
    cmd = [sys.executable, "-m", "humans.curation", "run", "--pipeline", pipeline, "--input", pool, "--out", out,
           "--threads", str(n), "--summary-json", out + ".json"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "HUMANS_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    summary = json.loads(Path(out + ".json").read_text())
    n_in = summary["stages"]["00_read"]["in"]
    return {"workers": n, "images": n_in, "samples": summary["samples"], "wall_s": round(wall, 1),
            "pipeline_s": summary["seconds"]["total"], "images_per_s": round(n_in / summary["seconds"]["total"], 2),
            "seconds": summary["seconds"]}


CLUSTER_DRIVER = """
import json, sys, time
from ray.cluster_utils import Cluster
from humans.curation import run_pipeline

nodes, cpus = int(sys.argv[3]), float(sys.argv[4])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False})
for _ in range(nodes - 1):
    cluster.add_node(num_cpus=cpus)
cluster.wait_for_nodes()
try:
    summary = run_pipeline(sys.argv[1], sys.argv[2], pipeline=sys.argv[5], ray_address=cluster.address,
                           overrides=json.loads(sys.argv[6]))
finally:
    cluster.shutdown()
print("SUMMARY " + json.dumps(summary))
"""


def run_cluster(pool: str, out: str, layout: str, pipeline: str) -> dict:
    nodes, cpus = (int(v) for v in layout.split("x"))
    total = nodes * cpus
    sets = {"filter_resources.num_cpus": 0.25, "person.resources.concurrency": total,
            "person.resources.num_cpus": 0.75, "embedding.resources.concurrency": 1,
            "phash.resources.concurrency": 1}
    env = {**os.environ, "HUMANS_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CLUSTER_DRIVER, pool, out, str(nodes), str(cpus), pipeline,
                           json.dumps(sets)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1])
    n_in = summary["stages"]["00_read"]["in"]
    return {"layout": layout, "nodes": nodes, "images": n_in, "samples": summary["samples"],
            "shard_nodes": len(summary["shard_nodes"]), "wall_s": round(wall, 1),
            "pipeline_s": summary["seconds"]["total"],
            "images_per_s": round(n_in / summary["seconds"]["total"], 2), "seconds": summary["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--pipeline", default="humans-test")
    ap.add_argument("--scale", default="small", choices=("small", "demo"))
    ap.add_argument("--nodes", nargs="+", default=None, metavar="NxC",
                    help="instead of --workers: Ray clusters of N nodes with C CPUs each on this machine, e.g. 1x2 2x1")
    ap.add_argument("--repeats", type=int, default=1, help="with --nodes: interleaved runs per layout")
    ap.add_argument("--md", default=None, help="write the markdown table here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from humans.curation.demo_pool import make_demo_pool

    # one run per worker count, or per cluster layout (interleaved repeats); the same columns after the first
    if args.nodes:
        plan = [(layout, rep) for rep in range(args.repeats) for layout in args.nodes]
        lead = {"nodes x CPUs": lambda r: r["layout"], "images": lambda r: r["images"], "kept": lambda r: r["samples"],
                "nodes writing shards": lambda r: r["shard_nodes"]}
    else:
        plan = [(n, 0) for n in args.workers]
        lead = {"worker processes": lambda r: r["workers"], "images": lambda r: r["images"],
                "kept": lambda r: r["samples"]}
    with tempfile.TemporaryDirectory(prefix="curscale-") as tmp:
        pool = str(make_demo_pool(Path(tmp) / "pool", scale=args.scale))
        rows = []
        for what, rep in plan:
            out = str(Path(tmp) / f"out{what}-{rep}")
            row = (run_cluster(pool, out, what, args.pipeline) if args.nodes
                   else run_once(pool, out, what, args.pipeline))
            print(json.dumps(row), flush=True)
            rows.append(row)
    base = rows[0]["images_per_s"]
    cols = {**lead, "pipeline s": lambda r: f"{r['pipeline_s']:.1f}", "images/s": lambda r: f"{r['images_per_s']:.2f}",
            "speed-up": lambda r: f"{r['images_per_s'] / base:.2f}x"}
    cols |= {f"{step.replace('_', ' ').replace('stages 0 4', 'stages 0-4')} s":
             (lambda r, step=step: f"{r['seconds'].get(step, 0):.1f}")
             for step in ("stages_0_4", "phash", "embedding", "shards")}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(fn(r)) for fn in cols.values()) + " |" for r in rows]
    print("\n".join(lines))
    if args.md:
        Path(args.md + (".nodes" if args.nodes else ".table")).write_text("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
