"""The command line: `run --help` explains every option; `score` prints the per-stage table;
a bad config fails at load with a clear message and exit status 2."""
from __future__ import annotations

import json
import subprocess
import sys

from humans.curation.cli import build_parser, main


def test_run_help_explains_every_option():
    proc = subprocess.run([sys.executable, "-m", "humans.curation", "run", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    text = proc.stdout
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    for action in run._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 15, action.dest
            assert action.option_strings[0] in text
    assert "ray job submit --working-dir ." in text and "resumes" in text


def test_score_command_prints_the_table(curated_run_dir, demo_pool_dir, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["score", str(curated_run_dir), "--pool", str(demo_pool_dir), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for stage in ("decode", "resolution", "quality", "person", "framing", "phash", "embedding", "KEPT"):
        assert stage in text
    assert json.loads(out.read_text())["stages"]["resolution"]["precision"] == 1.0


def test_bad_config_fails_before_any_work(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("pipelines:\n  humans:\n    stages:\n      - name: resolution\n        max_aspect: 0.5\n")
    code = main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--config", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "resolution.max_aspect" in err and "0.5" in err and "greater than or equal to 1" in err
    assert not (tmp_path / "o").exists()
