"""The main job's lanes (``run_lanes``: independent steps side by side, each in its own subprocess) and the
merge of probes run on disjoint backbones in separate processes (``heads.probe.merge_probe_runs``)."""
from __future__ import annotations

import json

import pytest


def _step(main_job, tmp_path, name: str, code: str):
    return main_job.Step(["-c", code], tmp_path / f"{name}.done", f"step {name}", name)


def test_lanes_run_steps_side_by_side_skip_finished_ones_and_log_each(tmp_path, monkeypatch):
    from humans.tools import main_job

    monkeypatch.setattr(main_job, "LANES", 2)
    monkeypatch.setattr(main_job, "IN_PROCESS", False)
    # a and b each wait for the other's start file: they finish only if they run at the same time
    wait = ("import pathlib, time; d = pathlib.Path({d!r}); "
            "(d / '{me}.started').write_text('1'); t = time.time()\n"
            "while not (d / '{other}.started').exists():\n"
            "    assert time.time() - t < 60, 'the other step never started'; time.sleep(0.05)\n"
            "print('{me} saw {other}'); (d / '{me}.done').write_text('1')")
    a = _step(main_job, tmp_path, "a", wait.format(d=str(tmp_path), me="a", other="b"))
    b = _step(main_job, tmp_path, "b", wait.format(d=str(tmp_path), me="b", other="a"))
    c = _step(main_job, tmp_path, "c", "raise SystemExit('c must not run: its marker exists')")
    c.marker.write_text("1")
    main_job.run_lanes([a, b, c], tmp_path / "logs")
    assert a.marker.exists() and b.marker.exists()
    assert (tmp_path / "logs" / "a.log").read_text().strip() == "a saw b"
    assert not (tmp_path / "logs" / "c.log").exists()


def test_a_failed_lane_stops_the_job_naming_the_step_and_its_log_and_starts_nothing_new(tmp_path, monkeypatch, capsys):
    from humans.tools import main_job

    monkeypatch.setattr(main_job, "LANES", 2)
    monkeypatch.setattr(main_job, "IN_PROCESS", False)
    bad = _step(main_job, tmp_path, "bad", "import sys; print('the cause, in the log'); sys.exit(3)")
    slow = _step(main_job, tmp_path, "slow", f"import time, pathlib; time.sleep(1); pathlib.Path({str(tmp_path / 'slow.done')!r}).write_text('1')")
    later = _step(main_job, tmp_path, "later", f"import pathlib; pathlib.Path({str(tmp_path / 'later.done')!r}).write_text('1')")
    with pytest.raises(SystemExit, match=r"step 'step bad' failed with exit code 3 \(log .*bad.log\)"):
        main_job.run_lanes([bad, slow, later], tmp_path / "logs")
    assert slow.marker.exists()          # the running step finished: its work is kept for the rerun
    assert not later.marker.exists()     # nothing new started after the failure
    assert "the cause, in the log" in capsys.readouterr().out


def test_one_lane_runs_the_steps_in_order_through_run(tmp_path, monkeypatch):
    from humans.tools import main_job

    monkeypatch.setattr(main_job, "LANES", 1)
    calls = []
    monkeypatch.setattr(main_job, "run", lambda cmd, marker, desc, light=False: calls.append(desc))
    main_job.run_lanes([_step(main_job, tmp_path, n, "pass") for n in "xyz"], tmp_path / "logs")
    assert calls == ["step x", "step y", "step z"]


def _part(labels, baseline: bool, samples=None):
    res = {lab: {"seg": {"mIoU": 0.1 * (i + 1)}} for i, lab in enumerate(labels)}
    if baseline:
        res["mean baseline"] = {"seg": {"mIoU": 0.05}}
    return {"results": res, "fits": {lab: {"seg": {}} for lab in labels}, "seconds": {lab: 1.0 for lab in labels},
            "layers": {lab: [1, 2] for lab in labels}, "samples": samples or {"seg": [8, 2]}, "size": [64, 48],
            "pose_size": [32, 24], "label_stride": 4}


def test_probe_parts_merge_into_one_table_in_the_arms_order_with_the_baseline_last():
    from humans.heads.probe import merge_probe_runs

    parts = [json.loads(json.dumps(_part(["random", "cl"], True))), _part(["mae", "mae+cl"], False)]
    merged = merge_probe_runs(parts, ["seg"], order=["random", "mae", "cl", "mae+cl"])
    assert list(merged["results"]) == ["random", "mae", "cl", "mae+cl", "mean baseline"]
    assert merged["results"]["mae"]["seg"]["mIoU"] == pytest.approx(0.1)
    assert merged["table"].splitlines()[0] == "| metric | random | mae | cl | mae+cl | mean baseline |"
    assert "| seg mIoU ↑ | 0.100 | 0.100 | **0.200** | **0.200** | 0.050 |" in merged["table"]
    assert set(merged["seconds"]) == {"random", "mae", "cl", "mae+cl"}
    with pytest.raises(ValueError, match="parts differ in 'samples'"):
        merge_probe_runs([_part(["a"], True), _part(["b"], False, samples={"seg": [9, 2]})], ["seg"])
    with pytest.raises(ValueError, match="backbone 'a' in two parts"):
        merge_probe_runs([_part(["a"], True), _part(["a"], False)], ["seg"])
