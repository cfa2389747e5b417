"""benchmarks/gpu_sharp_heads.sh, the prepared one-call GPU run for sharp heads, at its toy sizes on the CPU
(``SMOKE=1``): every phase runs for real and the record says what ran, where pretraining stopped and each head's
held-out figures beside the mean prediction; a phase that fails is recorded as missing, not scored."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_script_runs_whole_at_toy_sizes_and_records_each_head_beside_its_baseline(tmp_path):
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "WORK": str(tmp_path / "work"), "THREADS_SMOKE": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_sharp_heads.sh"), str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = (tmp_path / "out" / "gpu_sharp_heads.log").read_text() if (tmp_path / "out").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + log[-3000:]
    doc = json.loads((tmp_path / "out" / "gpu_sharp_heads.json").read_text())
    assert doc["missing"] == [], log[-4000:]
    assert doc["planned_steps"] == 4 and doc["pretrain"]["last_step"] == 4  # the budget fits all of STEPS
    assert not doc["pretrain_stopped_by_time_limit"]
    assert doc["device"].startswith("CPU") and doc["model"] == "study-s8"
    assert all(p["rc"] == 0 for p in doc["phases"].values()), doc["phases"]
    by = {(r["task"], r["arm"], r["metric"]): r for r in doc["records"]}
    assert len(by) == 8  # seg mIoU and boundary F1, normal angle and gradient ratio; pretrained and random init
    for r in doc["records"]:
        assert math.isfinite(r["value"]) and math.isfinite(r["mean_baseline"])
        assert r["train_samples"] == 48 and r["val_samples"] == 16
    assert 0 <= by[("seg", "pretrained", "mIoU")]["value"] <= 1
    assert 0 < by[("normal", "random", "mean_deg")]["value"] < 180
    assert "| seg | mIoU ↑ |" in doc["table"] and "| normal | mean angle (deg) ↓ |" in doc["table"]
    for task in ("seg", "normal"):
        assert (tmp_path / "out" / f"heads_{task}_gpu.png").stat().st_size > 10_000


def test_the_record_lists_a_head_that_did_not_finish_as_missing_and_scores_the_rest(tmp_path):
    from humans.tools.gpu_sharp_heads_report import main

    work = tmp_path / "work"
    (work / "pretrain").mkdir(parents=True)
    (work / "pretrain" / "metrics.csv").write_text("step,loss,images_per_s\n50,0.9,100\n100,0.5,120\n")
    (work / "phases.tsv").write_text("pretrain\t240\t124\nhead_seg_pretrained\t30\t0\nhead_seg_random\t70\t124\n")
    head = work / "heads" / "seg_pretrained"
    head.mkdir(parents=True)
    (head / "metrics.json").write_text(json.dumps({
        "metrics": {"mIoU": 0.3, "boundary_F1": 0.6}, "mean_baseline": {"mIoU": 0.03, "boundary_F1": 0.0},
        "train_samples": 100, "val_samples": 10, "seconds": 30}))
    out = tmp_path / "r.json"
    assert main(["report", "--work", str(work), "--out", str(out), "--planned-steps", "3000", "--objective", "mae",
                 "--model", "study-m8", "--device", "cpu"]) == 0
    doc = json.loads(out.read_text())
    assert doc["pretrain_stopped_by_time_limit"] is True
    assert doc["pretrain"] == {"first_step": 50, "first_loss": 0.9, "last_step": 100, "last_loss": 0.5,
                               "images_per_s": 110.0}
    assert doc["missing"] == ["seg_random", "normal_pretrained", "normal_random"]
    assert [(r["metric"], r["value"], r["primary"]) for r in doc["records"]] == [("mIoU", 0.3, True),
                                                                                 ("boundary_F1", 0.6, False)]
    assert "| seg | mIoU ↑ | 0.3 | n/a | 0.03 |" in doc["table"]


def test_the_plan_fits_the_pretraining_steps_to_the_budget_from_the_calibration_run(tmp_path):
    """Steps after the first give the time per step (the first carries one-off costs); the rest of the
    calibration phase's wall time is start-up, paid again by the real run."""
    from humans.tools.gpu_sharp_heads_report import plan_steps

    csv = tmp_path / "metrics.csv"
    csv.write_text("step,loss,step_s\n1,1.0,5.0\n2,0.9,0.1\n3,0.8,0.1\n")  # 5.2 s of steps
    assert plan_steps(csv, phase_seconds=25.2, budget_s=240, max_steps=3000) == (2200, 220)  # (240 - 20) / 0.1
    assert plan_steps(csv, phase_seconds=25.2, budget_s=240, max_steps=1000) == (1000, 100)
    assert plan_steps(csv, phase_seconds=25.2, budget_s=10, max_steps=1000) == (1, 1)  # never below one step
    assert plan_steps(tmp_path / "missing.csv", phase_seconds=0, budget_s=240, max_steps=1000) == (0, 0)


def test_past_its_deadline_the_script_skips_the_rest_and_still_writes_the_record(tmp_path):
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "WORK": str(tmp_path / "work"), "DEADLINE_S": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_sharp_heads.sh"), str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "out" / "gpu_sharp_heads.json").read_text())
    assert {p["rc"] for p in doc["phases"].values()} == {125} and len(doc["phases"]) == 13
    assert doc["records"] == [] and len(doc["missing"]) == 4 and doc["planned_steps"] == 0
    assert "skipped, the run's 1 s are spent" in proc.stdout
