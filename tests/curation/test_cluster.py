"""Many nodes on one machine: a Ray cluster of two nodes (``ray.cluster_utils.Cluster``, each node its
own raylet with two CPUs), the driver joining it by address as a submitted job does. The shards,
written by tasks on both nodes, form one index that holds every kept image exactly once; relative
paths are resolved on the driver."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

from humans.curation.decisions import read_decisions
from humans.shared.shards import iter_tar_samples, list_shards, read_manifest

CONFIG = Path(__file__).with_name("cheap_pipelines.yaml")

DRIVER = textwrap.dedent("""
    import json, sys
    from ray.cluster_utils import Cluster
    from humans.curation import run_pipeline

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        summary = run_pipeline(sys.argv[1], sys.argv[2], pipeline="cheap", config_path=sys.argv[3],
                               ray_address=cluster.address)
    finally:
        cluster.shutdown()
    print("SUMMARY " + json.dumps(summary))
""")


def test_two_node_cluster_writes_one_consistent_index(demo_pool_dir, tmp_path):
    env = {**os.environ, "HUMANS_NO_PROGRESS": "1"}
    env.pop("RAY_ADDRESS", None)
    # "out" is relative: the driver resolves it against its working folder before any worker sees it
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(demo_pool_dir), "out", str(CONFIG)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1])
    out = tmp_path / "out"
    assert summary["out"] == str(out) and "'out' resolved to " + str(out) in proc.stderr
    assert len(summary["shard_nodes"]) == 2  # shards were written on both nodes

    kept = set(read_decisions(out, "read").query("kept")["key"])
    for stage in ("resolution", "quality", "phash"):
        d = read_decisions(out, stage)
        kept -= set(d.loc[~d["kept"], "key"])
    index = pd.read_parquet(out / "index.parquet")
    assert index["key"].is_unique and set(index["key"]) == kept and len(kept) > 30
    keys = [s["__key__"] for shard in list_shards(out) for s in iter_tar_samples(shard)]
    assert sorted(keys) == sorted(index["key"])  # every kept image exactly once, across all shards
    manifest = read_manifest(out)
    assert manifest["total_samples"] == len(index) and len(manifest["shards"]) == summary["shards"] >= 4
    records = [json.loads(p.read_text()) for p in (out / "work" / "shards").glob("*.json")]
    assert len({r["node_id"] for r in records}) == 2


def test_models_run_on_the_gpu_ray_assigned_else_cpu():
    from humans.curation.raytools import assigned_device

    assert assigned_device(0, gpu_ids=[0], cuda_available=True) == "cpu"  # the stage asked for none
    assert assigned_device(1, gpu_ids=[3], cuda_available=True) == "cuda:0"  # Ray's GPU is cuda:0 in the actor
    assert assigned_device(0.5, gpu_ids=[], cuda_available=True) == "cpu"  # asked, none assigned
    assert assigned_device(1, gpu_ids=[0], cuda_available=False) == "cpu"  # assigned but no usable CUDA


def test_actors_leave_room_for_the_tasks_they_wait_on():
    from humans.curation.raytools import fit_actors

    assert fit_actors(2, 1.0, total_cpus=4, reserve=1) == (2, 1.0)
    assert fit_actors(4, 1.0, total_cpus=3, reserve=1) == (2, 1.0)
    assert fit_actors(2, 1.0, total_cpus=2, reserve=1.5) == (1, 0.5)
    # one CPU in all (--threads 1) and a 1-CPU filter task to feed the actor: the actor takes none
    assert fit_actors(1, 1.0, total_cpus=1, reserve=1) == (1, 0.0)


def test_phase_clock_separates_start_up_from_the_steady_rate():
    from humans.curation.raytools import PhaseClock

    clock = PhaseClock()
    clock.t0 = 100.0
    clock.done = [105.0, 106.0]
    assert clock.startup_s() is None  # one interval is no rate
    clock.done = [105.0, 106.0, 107.0, 108.0]  # a task a second once running: 4 s of work in 8 s
    assert clock.startup_s() == 4.0
    clock.done = [101.0, 102.0, 103.0]  # no start-up beyond one task's own time
    assert clock.startup_s() == 0.0


def test_per_task_steps_go_in_batches_that_cover_every_task_once_in_order():
    from humans.curation.raytools import batches

    tasks = [f"t{i}" for i in range(29)]
    got = batches(tasks, cpus=2)  # about 4 batches per CPU: 8 of at most 4 tasks
    assert [t for b in got for t in b] == tasks
    assert len(got) == 8 and max(map(len, got)) == 4
    assert batches(tasks[:3], cpus=2) == [["t0"], ["t1"], ["t2"]]  # never an empty batch
    big = [str(i) for i in range(10_000)]
    got = batches(big, max_batch=64, cpus=2)  # a large pool: the batch size cap decides
    assert max(map(len, got)) <= 64 and len(got) == 157 and [t for b in got for t in b] == big
    assert batches([], cpus=2) == []
