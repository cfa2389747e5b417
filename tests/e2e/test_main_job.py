"""The main job end to end at the smallest sizes (tools/main_job.py --preset tiny).

The pool and the curated shards come from the session fixtures (the same ``curation demo-pool`` and
``curation run`` that the job's first two steps call), placed where the job expects them, so the job
skips those two steps exactly as it does for a user rerunning it; everything after runs for real.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("pose", "seg", "normal", "pointmap", "albedo")


def _run_job(out: Path) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "main_job.py"), "--out", str(out),
                           "--preset", "tiny", "--in-process", "--head-baselines"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def test_main_job_chain_is_consistent(demo_pool_dir, curated_run_dir, tmp_path):
    out = tmp_path / "job"
    shutil.copytree(demo_pool_dir, out / "pool")
    shutil.copytree(curated_run_dir, out / "shards")
    log = _run_job(out)
    assert "skip  1. demo web pool" in log and "skip  2. six curation stages" in log

    # curation -> report/verify: the report counts what the manifest and the index hold
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    n_index = pq.read_metadata(out / "shards" / "index.parquet").num_rows
    assert manifest["total_samples"] == n_index > 0
    stats = json.loads((out / "report" / "stats.json").read_text())
    assert str(n_index) in json.dumps(stats)
    assert (out / "verify.txt").read_text().startswith(f"OK: {len(manifest['shards'])} shards, {n_index} samples")
    # the curation embedder is pretrained and exported before curation (the copied shards come from the
    # session's random-init `humans-test` run, so the job's own curation step is skipped here)
    assert "start 1c. pretrain the curation embedder" in log and "done  1d. export the embedder" in log
    from humans.shared.backbone import load_backbone

    assert load_backbone(out / "backbones" / "embedder.safetensors").config.name == "study-s8"
    assert log.index("1d. export the embedder") < log.index("2. six curation stages")

    # pretrain -> export: three objectives trained on those shards, each exported and loadable
    from humans.shared.backbone import load_backbone

    for name in ("mae_seed0", "cl_seed0", "mae_cl_seed0"):
        rows = (out / "pretrain" / name / "metrics.csv").read_text().strip().splitlines()
        assert len(rows) >= 2, f"{name}: no metrics rows"
        model = load_backbone(out / "backbones" / f"{name}.safetensors")
        assert model.embed_dim > 0
    # pretraining saw the unlabelled synthetic shards beside the curated ones, and never a label
    assert json.loads((out / "unlabelled" / "manifest.json").read_text())["total_samples"] == 48
    import tarfile
    members = {m.rsplit(".", 1)[1] for t in (out / "unlabelled").glob("*.tar") for m in tarfile.open(t).getnames()}
    assert members == {"jpg"}, members

    # synth -> probe -> heads: every backbone probed on all five tasks, heads trained on the best one
    meta = json.loads((out / "synth" / "meta.json").read_text())
    assert meta["count"] == 24
    probe = json.loads((out / "probe.json").read_text())["results"]
    for label in ("random", "mae", "cl", "mae+cl"):
        assert set(TASKS) <= set(probe[label]), label
    best = (out / "best_backbone.txt").read_text().strip()
    assert best in ("mae", "cl", "mae+cl")
    best_file = out / "backbones" / f"{best.replace('+', '_')}_seed0.safetensors"
    for task in TASKS:
        ckpt = out / "heads" / task / "head.safetensors"
        with safe_open(str(ckpt), "pt") as fh:
            metadata = json.dumps(fh.metadata())
        assert best_file.name in metadata, f"{task} head not trained on the best backbone"
        with safe_open(str(out / "heads_random" / task / "head.safetensors"), "pt") as fh:  # --head-baselines
            assert "random_seed0.safetensors" in json.dumps(fh.metadata()), f"{task} baseline head"
        assert list((out / "predictions" / task).glob("*.png")), f"no {task} overlays"
        rec = json.loads((out / "heads" / task / "metrics.json").read_text())
        if task != "pose":  # dense heads: trained on their own 32 images, scored on all 24 of the probes' set
            assert (rec["train_samples"], rec["val_samples"]) == (32, 24), (task, rec)
    # the pose head reads only the first 16 of the 32 (the preset's head_task_images): as many people as those hold
    people = json.loads((out / "synth_heads" / "keypoints.json").read_text())
    first16 = {im["id"] for im in sorted(people["images"], key=lambda im: im["file_name"])[:16]}
    pose_rec = json.loads((out / "heads" / "pose" / "metrics.json").read_text())
    assert 0 < pose_rec["train_samples"] == sum(a["image_id"] in first16 for a in people["annotations"]) < len(
        people["annotations"])
    heads_set = {p.read_bytes() for p in (out / "synth_heads" / "images").glob("*.jpg")}
    assert len(heads_set) == 32 and not heads_set & {p.read_bytes() for p in (out / "synth" / "images").glob("*.jpg")}

    # the study record: every arm (and the mean baseline) on every task, one primary metric per task
    study = json.loads((out / "study.json").read_text())
    recs = study["records"]
    assert {r["arm"] for r in recs} == {"random", "mae", "cl", "mae+cl", "mean"}
    prim = {(r["arm"], r["task"]) for r in recs if r["primary"]}
    assert len(prim) == 25 and len(study["sentences"]) == 5
    assert (out / "pictures" / "feature_pca.png").is_file()
    assert len(list((out / "pictures").glob("reconstruction_*.png"))) == 2

    # the summary page: every linked file exists, the sample count is the manifest's
    page = (out / "summary.html").read_text()
    links = re.findall(r"(?:src|href)='([^']+)'", page)
    assert links and all((out / link).exists() for link in links), links
    assert f"{manifest['total_samples']} samples" in page
    assert page.count("images for 1 epoch, scored on") == 5  # each head's training, from its history.json
    # the heads' table: the best backbone, random init and the mean prediction, read from the metrics files
    assert f"<tr><th>metric</th><th>{best}</th><th>random init</th><th>mean prediction</th></tr>" in page
    seg_best, seg_random = (json.loads((out / d / "seg" / "metrics.json").read_text()) for d in ("heads", "heads_random"))
    assert (f"<th>seg mIoU ↑</th><td>{seg_best['metrics']['mIoU']:.4g}</td>"
            f"<td>{seg_random['metrics']['mIoU']:.4g}</td><td>{seg_best['mean_baseline']['mIoU']:.4g}</td>") in page

    # a second run redoes nothing
    again = _run_job(out)
    assert "start " not in again and again.count("skip ") >= 20

    # the same probes in two lanes (two subprocesses, the backbones split, the parts merged): the same table
    # columns in the arms' order and the same figures up to the one-thread sums' rounding
    from humans.tools import main_job

    backbones = {"random": out / "backbones" / "random_seed0.safetensors",
                 **{o: out / "backbones" / f"{o.replace('+', '_')}_seed0.safetensors" for o in ("mae", "cl", "mae+cl")}}
    lanes_json = tmp_path / "lanes" / "probe.json"
    saved = main_job.LANES, main_job.IN_PROCESS
    main_job.LANES, main_job.IN_PROCESS = 2, False
    try:
        main_job.probe_backbones(tmp_path / "lanes", main_job.PRESETS["tiny"], backbones, out / "synth", lanes_json,
                                 tmp_path / "lanes" / "probe.md", seed=0)
    finally:
        main_job.LANES, main_job.IN_PROCESS = saved
    laned = json.loads(lanes_json.read_text())["results"]
    assert list(laned) == list(probe) == ["random", "mae", "cl", "mae+cl", "mean baseline"]
    for label in laned:
        for task in TASKS:
            for key, value in probe[label][task].items():
                if isinstance(value, float) and "/" not in key:  # the table's figures, not per-class IoUs
                    assert laned[label][task][key] == pytest.approx(value, abs=0.02, nan_ok=True), (label, task, key)
    assert (tmp_path / "lanes" / "logs" / "probe_seed0_part1.log").exists()
    assert "| metric | random | mae | cl | mae+cl | mean baseline |" in (tmp_path / "lanes" / "probe.md").read_text()
