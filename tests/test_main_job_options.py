"""tools/main_job.py options that change a run's length: refused values, and runs of two lengths kept apart."""
from __future__ import annotations

import dataclasses

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
