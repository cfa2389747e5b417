"""Resume: a job killed mid-way and started again ends with exactly the samples of an uninterrupted
run (nothing lost, nothing twice, the same bytes: identical manifest.json); finished shards are skipped and a missing one is rebuilt; the
large-pool IVF path of the embedding dedup agrees with the exact path."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd

from humans.curation import run_pipeline
from humans.curation.config import load_pipeline
from humans.curation.decisions import read_decisions
from humans.curation.pipeline import FAIL_AFTER_ENV
from humans.curation.stages.embedding_run import group_embeddings, load_emb
from humans.curation.sources import plan_pool
from humans.shared.shards import file_sha256, iter_tar_samples, list_shards, read_manifest

PIPE = "humans-test"


def _samples(run) -> dict[str, tuple]:
    out = {}
    for shard in list_shards(run):
        for s in iter_tar_samples(shard):
            meta = json.loads(s["json"])
            assert s["__key__"] not in out, f"{s['__key__']} written twice"
            out[s["__key__"]] = (s[meta["image_ext"]], meta)
    return out


def _same_outputs(a, b) -> None:
    ia, ib = pd.read_parquet(a / "index.parquet"), pd.read_parquet(b / "index.parquet")
    assert ia["key"].is_unique and list(ia["key"]) == list(ib["key"])
    assert ia.drop(columns=["shard"]).equals(ib.drop(columns=["shard"]))
    sa, sb = _samples(a), _samples(b)
    assert sa.keys() == sb.keys() == set(ia["key"])
    for k in sa:
        assert sa[k][0] == sb[k][0] and sa[k][1] == sb[k][1], k
    ma, mb = read_manifest(a), read_manifest(b)
    assert [(e["name"], e["samples"], e["keys_sha256"]) for e in ma["shards"]] == \
        [(e["name"], e["samples"], e["keys_sha256"]) for e in mb["shards"]]
    for e in ma["shards"]:
        assert file_sha256(a / e["name"]) == e["sha256"]
    # byte-reproducible: fixed tar member metadata and order, deterministic index and manifest
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    assert (a / "index.parquet").read_bytes() == (b / "index.parquet").read_bytes()


def test_kill_mid_run_then_resume_equals_uninterrupted_run(demo_pool_dir, curated_run_dir, ray_local, tmp_path):
    out = tmp_path / "killed"
    # The killed job is a separate driver process that joins the session's Ray cluster through
    # RAY_ADDRESS, exactly as a job started by `ray job submit` does.
    env = {**os.environ, FAIL_AFTER_ENV: "3", "HUMANS_NO_PROGRESS": "1", "RAY_ADDRESS": ray_local.address}
    cmd = [sys.executable, "-m", "humans.curation", "run", "--pipeline", PIPE, "--input", str(demo_pool_dir),
           "--output", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 75, proc.stderr[-3000:]  # the fault hook exits hard, like a kill
    assert "connected to Ray cluster" in proc.stderr
    n_tasks = len(plan_pool(str(demo_pool_dir), load_pipeline(PIPE).items_per_task))
    done = sorted(p.stem for p in (out / "work" / "done").glob("*.json"))
    assert 3 <= len(done) < n_tasks
    assert not (out / "index.parquet").exists() and not (out / "manifest.json").exists()
    assert not list_shards(out)
    summary = run_pipeline(str(demo_pool_dir), str(out), pipeline=PIPE)
    assert summary["tasks_resumed"] == len(done)
    _same_outputs(out, curated_run_dir)
    for stage in ("read", "quality", "person", "phash", "embedding"):
        a = read_decisions(out, stage).sort_values("key").reset_index(drop=True)
        b = read_decisions(curated_run_dir, stage).sort_values("key").reset_index(drop=True)
        assert a["key"].is_unique and a[["key", "kept", "reason"]].equals(b[["key", "kept", "reason"]]), stage


def test_rerun_skips_whole_shards_and_rebuilds_a_missing_one(demo_pool_dir, curated_run_dir, ray_local, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(curated_run_dir, out)
    before = {p.name: file_sha256(p) for p in list_shards(out)}
    summary = run_pipeline(str(demo_pool_dir), str(out), pipeline=PIPE)
    assert summary["tasks_resumed"] == summary["tasks"] and summary["shards_skipped"] == summary["shards"]
    assert summary["startup_seconds"] == {}  # nothing ran, so no start-up is reported (not the first run's)
    assert {p.name: file_sha256(p) for p in list_shards(out)} == before
    victim = sorted(before)[1]
    (out / victim).unlink()
    (out / (victim + ".tmp")).write_bytes(b"half a shard")  # what a killed writer leaves
    summary = run_pipeline(str(demo_pool_dir), str(out), pipeline=PIPE)
    assert summary["shards_skipped"] == summary["shards"] - 1
    assert not list(out.glob("*.tmp")) and (out / victim).is_file()
    _same_outputs(out, curated_run_dir)


def test_ivf_partitioned_embedding_dedup_agrees_with_exact_search(demo_pool_dir, curated_run_dir, ray_local, tmp_path):
    out = tmp_path / "ivf"
    shutil.copytree(curated_run_dir, out)
    (out / "work" / "embedding.done.json").unlink()
    cfg = load_pipeline(PIPE, overrides={"embedding.ivf_threshold": 2, "embedding.nlist": 4,
                                         "embedding.nprobe": 2, "embedding.partitions": 2})
    tasks = plan_pool(str(demo_pool_dir), cfg.items_per_task)
    info = group_embeddings(tasks, cfg, str(out), total_cpus=2.0)
    assert info["index"] == "ivf" and info["nlist"] == 4 and info["vectors"] > 20
    # the planner counts vectors from the files' headers (Ray tasks); the count is the files' true length
    assert info["vectors"] == sum(len(load_emb(str(p))[1]) for p in (out / "work" / "emb").glob("*.npz"))
    ivf = read_decisions(out, "embedding").set_index("key")
    flat = read_decisions(curated_run_dir, "embedding").set_index("key")
    assert sorted(ivf.index) == sorted(flat.index)
    removed_flat = set(flat.index[~flat["kept"]])
    removed_ivf = set(ivf.index[~ivf["kept"]])
    assert removed_ivf <= removed_flat and len(removed_ivf) >= len(removed_flat) - 1
