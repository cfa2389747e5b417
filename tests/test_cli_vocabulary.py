"""Every command's ``--help`` speaks one vocabulary: the shared flags have one spelling, defaults are
shown and every subcommand has an example; ``--set`` is parsed by one function that names the
allowed keys of an unknown one; the console commands are declared and ``pipelines.yaml`` ships."""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import pytest

from humans.shared.cli import OLD_SPELLINGS, SHARED_FLAGS, parse_set
from humans.shared.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# other spellings of the shared ideas that must never appear in any --help
FORBIDDEN = {"--output", "--outdir", "--out-dir", "--output-dir", "--num-cpus", "--cpus", "--nthreads",
             "--num-threads", "--workers", "--gpu", "--cuda", "--use-gpu", "--dev", "--override", "--overrides",
             "--cfg", "--config-file", "--conf", "--set-option", "--opt"}
DEVICE_LIKE = re.compile(r"--(device|gpu|gpus|cuda|accelerator)\b")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from humans.curation.cli import build_parser as curate
    from humans.heads.cli import build_parser as heads
    from humans.pretrain.cli import build_parser as pretrain
    from humans.tools.main_job import main as _main  # noqa: F401 - the `humans` command's module imports

    out: dict[str, argparse.ArgumentParser] = {}
    for name, build in (("humans-curate", curate), ("humans-pretrain", pretrain), ("humans-heads", heads)):
        top = build()
        out[name] = top
        for action in top._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, parser in action.choices.items():
                    out[f"{name} {sub}"] = parser
    return out


def _main_job_help(capsys) -> str:
    from humans.tools.main_job import main

    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


def test_every_subcommand_help_uses_the_shared_spellings(capsys):
    parsers = _parsers()
    assert {"humans-curate run", "humans-curate demo-pool", "humans-curate verify", "humans-pretrain train",
            "humans-pretrain export", "humans-heads train", "humans-heads predict", "humans-heads synth"} <= set(parsers)
    helps = {name: p.format_help() for name, p in parsers.items()}
    helps["humans"] = _main_job_help(capsys)
    seen = {flag: 0 for flag in SHARED_FLAGS}
    for name, text in helps.items():
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
        bad = flags & (FORBIDDEN | set(OLD_SPELLINGS))
        assert not bad, f"`{name} --help` spells a shared idea differently: {sorted(bad)}"
        for flag in DEVICE_LIKE.findall(text):
            assert flag == "device", f"`{name} --help` has --{flag}; the device flag is spelled --device"
        for flag in SHARED_FLAGS:
            seen[flag] += flag in flags
        if " " in name or name == "humans":  # a subcommand (or the main job): an example and defaults
            assert re.search(r"^examples?:", text, re.M), f"`{name} --help` has no example"
            has_default = any(a.default not in (None, False, [], argparse.SUPPRESS) and a.option_strings
                              and a.help != argparse.SUPPRESS for a in parsers[name]._actions) \
                if name in parsers else True
            if has_default:
                assert "default" in text, f"`{name} --help` shows no defaults"
    assert all(seen[f] for f in ("--out", "--threads", "--config", "--set")), seen


def test_pretrain_help_shows_the_config_defaults():
    text = _parsers()["humans-pretrain train"].format_help()
    from humans.pretrain.config import TrainConfig

    cfg = TrainConfig()
    flat = " ".join(text.split())
    assert f"--steps STEPS total optimizer steps of the run (default: {cfg.steps})" in flat
    assert f"(default: {cfg.optim.lr})" in flat


def test_old_spellings_still_parse_but_are_hidden():
    p = _parsers()["humans-curate run"]
    a = p.parse_args(["--input", "P", "--output", "O", "--num-cpus", "3"])
    assert (a.out, a.threads) == ("O", 3)
    assert "--output" not in p.format_help() and "--num-cpus" not in p.format_help()


def test_parse_set_is_the_one_parser():
    assert parse_set(["a.b=1", "name=x", "l=[1, 2]", "flag=true", "empty=", "url=http://h/x=y"]) == \
        {"a.b": 1, "name": "x", "l": [1, 2], "flag": True, "empty": "", "url": "http://h/x=y"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set(["novalue"])
    import humans.curation.config as curation_config

    assert not hasattr(curation_config, "parse_set")  # no second parser: curation uses shared.cli's


def test_unknown_set_keys_name_the_allowed_keys(tmp_path, capsys):
    from humans.pretrain.config import load_train_config

    with pytest.raises(ConfigError) as exc:
        load_train_config(None, parse_set(["optim.lrr=0.1"]))
    msg = str(exc.value)
    assert "optim.lrr" in msg and "(allowed: " in msg and "lr" in msg and "warmup_steps" in msg

    from humans.curation.config import load_pipeline

    with pytest.raises(ConfigError) as exc:
        load_pipeline("humans-test", overrides=parse_set(["person.min_scor=0.3"]))
    msg = str(exc.value)
    assert "min_scor" in msg and "(allowed: " in msg and "min_score" in msg and "analysis_long_side" in msg

    from humans.heads.cli import main

    (tmp_path / "b.safetensors").write_bytes(b"x")
    code = main(["train", "--task", "seg", "--backbone", str(tmp_path / "b.safetensors"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--set", "epoch=3"])
    err = capsys.readouterr().err
    assert code == 2 and "epoch" in err and "(allowed: " in err and "epochs" in err


def test_console_commands_and_pipelines_yaml_ship():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = meta["project"]["scripts"]
    assert set(scripts) == {"humans", "humans-curate", "humans-pretrain", "humans-heads", "humans-synth"}
    import importlib

    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target
    from humans.curation.config import DEFAULT_CONFIG

    assert DEFAULT_CONFIG.is_file() and DEFAULT_CONFIG.parent.name == "curation"  # inside the package
    assert "*.yaml" in meta["tool"]["setuptools"]["package-data"]["*"]


def test_main_job_head_epochs_option(tmp_path, capsys):
    """``humans --head-epochs`` takes N for every head or TASK=N for one; a count below 1 or an unknown task
    is refused, naming the allowed values, before any step runs."""
    from humans.tools.main_job import PRESETS, main, with_head_epochs

    demo = PRESETS["demo"]
    # the demo's heads see as many samples as 600 images at 12 epochs (seg 36), from 2400 images; pose from 600
    assert {t: (demo.epochs_of(t), demo.images_of(t)) for t in ("seg", "normal", "pose")} == {
        "seg": (9, 2400), "normal": (3, 2400), "pose": (12, 600)}
    assert demo.head_order()[:2] == ["seg", "pose"]  # longest first: 9 x 2400 seg samples outweigh pose's 2 x 12 x 600
    assert PRESETS["study"].images_of("pose") == 0     # the study's heads train on the probes' set
    assert PRESETS["study"].head_order()[:2] == ["pose", "seg"]
    both = with_head_epochs(demo, "20")  # a bare N sets every head, the preset's seg count included
    assert {t: both.epochs_of(t) for t in ("pose", "seg", "albedo")} == {"pose": 20, "seg": 20, "albedo": 20}
    one = with_head_epochs(demo, "albedo=24")  # TASK=N keeps the rest of the preset
    assert {t: one.epochs_of(t) for t in ("pose", "seg", "albedo")} == {"pose": 12, "seg": 9, "albedo": 24}
    mixed = with_head_epochs(demo, "8, seg=48")
    assert {t: mixed.epochs_of(t) for t in ("pose", "seg")} == {"pose": 8, "seg": 48}
    for spec, message in (("0", "--head-epochs 0: '0'; allowed N or TASK=N with N >= 1"),
                          ("seg=x", "allowed N or TASK=N"),
                          ("depth=3", "task 'depth'; allowed pose, seg, normal, pointmap, albedo")):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(tmp_path / "run"), "--head-epochs", spec])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
