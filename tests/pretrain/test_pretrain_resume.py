"""Kill-and-resume: a run SIGKILLed after a checkpoint and resumed gives the same losses, data and
parameters as an uninterrupted run (bit for bit on CPU), with two decoding workers per rank."""
from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import torch

from humans.pretrain.checkpoint import ckpt_path, latest_checkpoint, load_checkpoint, step_of
from humans.pretrain.config import dump_config, load_train_config
from humans.pretrain.trainer import Trainer
from pretrain_testlib import process_context, run_cli, tiny_config


def _losses(run: Path) -> dict[int, tuple[str, str, str]]:
    rows = csv.DictReader((run / "metrics.csv").open())
    return {int(r["step"]): (r["loss"], r["loss_mae"], r["loss_cl"]) for r in rows}


def test_sigkill_then_resume_matches_uninterrupted_run(fixture_shards, tmp_path):
    steps = 8
    cfg = tiny_config(fixture_shards, steps=steps, threads=1, ckpt_every=3, **{
        "data.num_workers": 2, "views.global_size": 64, "views.local_size": 32})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(dump_config(cfg))

    # the run that gets killed (`python -m pretrain train` in a child process): SIGKILL as soon as
    # the step-3 checkpoint exists
    killed = tmp_path / "killed"
    proc = process_context().Process(target=run_cli, args=(["train", "--config", str(cfg_file),
                                                             "--out", str(killed)],))
    proc.start()
    deadline = time.time() + 120
    while not ckpt_path(killed, 3).exists():
        assert proc.is_alive(), f"training process exited early with {proc.exitcode}"
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    proc.kill()
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    resumed_from = latest_checkpoint(killed)
    assert resumed_from is not None and not ckpt_path(killed, steps).exists()

    # the uninterrupted reference
    ref = tmp_path / "ref"
    trainer = Trainer(cfg, ref)
    trainer.run()
    trainer.close()

    # resume the killed run from its newest checkpoint (config read back from the run directory)
    resumed = Trainer(load_train_config(killed / "config.yaml"), killed, resume=True)
    assert resumed.step == step_of(resumed_from) >= 3
    resumed.run()
    resumed.close()

    # same losses at every step (metrics.csv of the killed run was cut back to its checkpoint)
    assert _losses(killed) == _losses(ref) and len(_losses(ref)) == steps
    # same parameters, teacher, optimizer moments and data position at the end
    a, b = load_checkpoint(ckpt_path(ref, steps)), load_checkpoint(ckpt_path(killed, steps))
    for part in ("model", "teacher"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a["data"] == b["data"] and a["data"][0]["batches"] == steps
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == steps
