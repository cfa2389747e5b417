"""tools/main_job.py options that change a run's length: refused values, and runs of two lengths kept apart."""
from __future__ import annotations

import dataclasses
import json

import pytest


def test_pretrain_steps_must_be_positive(capsys):
    from humans.tools.main_job import main

    with pytest.raises(SystemExit) as exc:
        main(["--out", "/nonexistent/never-made", "--pretrain-steps", "0"])
    assert exc.value.code == 2
    assert "--pretrain-steps 0: allowed >= 1" in capsys.readouterr().err


def test_a_run_of_another_length_is_refused_not_resumed(tmp_path):
    """An arm folder started with 6 steps must not be continued as an 8-step run: its exported backbone
    (named without the length) would be the 6-step one, silently."""
    from humans.tools.main_job import PRESETS, _planned_steps, pretrain_arms

    arm = tmp_path / "pretrain" / "mae_seed0"
    arm.mkdir(parents=True)
    (arm / "config.yaml").write_text("model: study-s8\nsteps: 6\n")
    assert _planned_steps(arm) == 6
    assert _planned_steps(tmp_path / "pretrain" / "cl_seed0") is None
    preset = dataclasses.replace(PRESETS["tiny"], pretrain_steps=8)
    with pytest.raises(SystemExit, match="holds a run of 6 steps, not 8"):
        pretrain_arms(tmp_path, preset, tmp_path / "shards", tmp_path / "unlabelled", seed=0)


def test_a_mae_cl_run_of_another_lam_is_refused_and_the_arm_gets_the_presets_lam(tmp_path, monkeypatch):
    """The mae+cl arm is trained with the preset's CL weight; a folder started with another weight is not
    continued (its exported backbone would silently mix the two weightings)."""
    from humans.tools import main_job

    preset = main_job.PRESETS["tiny"]
    assert preset.mae_cl_lam == 0.1 and main_job.PRESETS["study"].mae_cl_lam == 0.1
    arm = tmp_path / "pretrain" / "mae_cl_seed0"
    arm.mkdir(parents=True)
    (arm / "config.yaml").write_text(f"lam: 1.0\nsteps: {preset.pretrain_steps}\n")
    calls = []
    monkeypatch.setattr(main_job, "run", lambda cmd, marker, desc, light=False: calls.append(cmd))
    (tmp_path / "backbones").mkdir()
    (tmp_path / "backbones" / "random_seed0.safetensors").write_bytes(b"")  # skip building the random arm
    with pytest.raises(SystemExit, match="holds a mae\\+cl run with lam 1.0, not 0.1"):
        main_job.pretrain_arms(tmp_path, preset, tmp_path / "shards", tmp_path / "unlabelled", seed=0)
    assert [c for c in calls if "train" in c] == []       # every arm's folder is checked before any arm runs
    (arm / "config.yaml").write_text(f"lam: 0.1\nsteps: {preset.pretrain_steps}\n")
    calls.clear()
    main_job.pretrain_arms(tmp_path, preset, tmp_path / "shards", tmp_path / "unlabelled", seed=0)
    trains = [c for c in calls if "train" in c]
    # the arms with a CL term (2-2.5x the MAE arm's time) first, so that lanes side by side finish together
    assert [c[c.index("--objective") + 1] for c in trains] == ["cl", "mae+cl", "mae"]
    assert all("--lam" not in c for c in trains[::2])                               # mae and cl: no weight
    assert trains[1][trains[1].index("--lam") + 1] == "0.1"


def test_head_images_extends_the_heads_set_keeps_its_first_images_and_refuses_to_shrink(tmp_path, monkeypatch, capsys):
    """--head-images N: step 5c makes N labelled humans; asking for more later extends the folder with the
    first images unchanged, asking for fewer is refused (heads trained on the larger set would be stale)."""
    from humans.tools import main_job

    monkeypatch.setattr(main_job, "IN_PROCESS", True)
    data = tmp_path / "synth"
    preset = dataclasses.replace(main_job.PRESETS["tiny"], head_synth_count=2, threads=1)
    assert main_job.head_images(tmp_path, dataclasses.replace(preset, head_synth_count=0), data) == (data, [])
    head_data, val = main_job.head_images(tmp_path, preset, data)
    assert head_data == tmp_path / "synth_heads" and val == ["--val-data", str(data)]
    first = sorted((head_data / "images").iterdir())
    assert len(first) == 2
    before = {p.name: p.read_bytes() for p in first}
    main_job.head_images(tmp_path, dataclasses.replace(preset, head_synth_count=3), data)
    assert json.loads((head_data / "meta.json").read_text())["count"] == 3
    after = {p.name: p.read_bytes() for p in sorted((head_data / "images").iterdir())}
    assert len(after) == 3 and all(after[k] == v for k, v in before.items())
    assert "holds 2 labelled humans, 3 asked: extending it" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds 3 labelled humans, --head-images asks for 2"):
        main_job.head_images(tmp_path, preset, data)


def test_head_images_must_be_positive(capsys):
    from humans.tools.main_job import main

    with pytest.raises(SystemExit) as exc:
        main(["--out", "/nonexistent/never-made", "--head-images", "0"])
    assert exc.value.code == 2
    assert "--head-images 0: allowed >= 1" in capsys.readouterr().err


def test_best_backbone_ranks_pose_by_pck_not_by_an_oks_ap_that_is_zero_for_all(tmp_path):
    """The heads train on the backbone of best mean rank over the probes' primary metrics. OKS AP reads 0
    for every backbone at the probes' scale; ranked by it, pose went to the first label in sort order."""
    from humans.tools.main_job import best_backbone

    def row(pck, miou, deg, si, mae):
        return {"pose": {"AP": 0.0, "PCK@0.1": pck}, "seg": {"mIoU": miou}, "normal": {"mean_deg": deg},
                "pointmap": {"si_error": si}, "albedo": {"MAE": mae}}

    results = {"random": row(0.9, 0.9, 1.0, 0.01, 0.01),          # never chosen, even when it wins
               "cl": row(0.30, 0.05, 37.0, 0.16, 0.14),
               "mae": row(0.35, 0.04, 37.5, 0.17, 0.16),
               "mae+cl": row(0.40, 0.06, 37.2, 0.15, 0.15),
               "mean baseline": row(0.9, 0.9, 1.0, 0.01, 0.01)}
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"results": results}))
    # ranks (0 best) of seg, normal, pointmap, albedo: cl 1+0+1+0, mae+cl 0+1+0+1, mae 2+2+2+2; pose decides.
    # By PCK@0.1 mae+cl is first (0), cl last (2); by the all-zero AP, cl first by label: cl would win
    assert best_backbone(path) == "mae+cl"
    results["cl"]["pose"]["PCK@0.1"] = 0.45
    path.write_text(json.dumps({"results": results}))
    assert best_backbone(path) == "cl"


def test_head_images_keeps_each_heads_samples_seen_and_head_epochs_sets_epochs_over_it(tmp_path, monkeypatch):
    """--head-images N scales each head's epochs so it sees as many samples as the demo gives it (600 images:
    the demo before 2400, seg 36 and the others 12; before, 600 kept the 2400-image epochs, 3, a quarter of the
    samples); --head-epochs, given too, sets epochs over the scaled ones."""
    from humans.tools import main_job

    demo = main_job.PRESETS["demo"]
    assert {t: demo.epochs_of(t) * demo.images_of(t) for t in main_job.TASKS} == {
        "pose": 7200, "seg": 21600, "normal": 7200, "pointmap": 7200, "albedo": 7200}
    p600 = main_job.with_head_images(demo, 600)
    assert {t: (p600.epochs_of(t), p600.images_of(t)) for t in main_job.TASKS} == {
        "pose": (12, 600), "seg": (36, 600), "normal": (12, 600), "pointmap": (12, 600), "albedo": (12, 600)}
    p9600 = main_job.with_head_images(demo, 9600)
    assert {t: p9600.epochs_of(t) for t in main_job.TASKS} == {
        "pose": 1, "seg": 2, "normal": 1, "pointmap": 1, "albedo": 1}
    # without step 5c (study) the heads train on the probes' set less its 20 % held out: 192 of 240
    study = main_job.PRESETS["study"]
    assert main_job.with_head_images(study, 96).epochs_of("seg") == 24

    seen = {}

    def capture(out, p):
        seen["preset"] = p
        raise SystemExit(0)

    monkeypatch.setattr(main_job, "steps", capture)
    with pytest.raises(SystemExit):
        main_job.main(["--out", str(tmp_path / "a"), "--head-images", "600", "--head-epochs", "seg=20"])
    p = seen["preset"]
    assert (p.head_synth_count, p.epochs_of("seg"), p.epochs_of("normal"), p.images_of("pose")) == (600, 20, 12, 600)
    with pytest.raises(SystemExit):
        main_job.main(["--out", str(tmp_path / "b"), "--head-images", "600", "--head-epochs", "5"])
    assert {seen["preset"].epochs_of(t) for t in main_job.TASKS} == {5}
