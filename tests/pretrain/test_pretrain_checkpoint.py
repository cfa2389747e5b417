"""Checkpoint hygiene: a save killed half-way leaves a temporary file that the next run removes, and
a checkpoint of the tiny model (main-job head settings) stays a small multiple of the backbone."""
from __future__ import annotations

import os
import signal

import torch

from humans.pretrain.checkpoint import ckpt_path, latest_checkpoint, save_checkpoint
from humans.pretrain.config import load_train_config
from humans.pretrain.trainer import Trainer
from pretrain_testlib import process_context, tiny_config


class _KillWhilePickled:
    """Pickling this object SIGKILLs the process: the save is cut off mid-write, as a kill would."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)
        return (int, ())


def _save_and_die(path: str) -> None:
    save_checkpoint({"model": {"w": torch.zeros(1 << 18)}, "boom": _KillWhilePickled()}, path)


def test_interrupted_save_leaves_temp_that_next_run_removes(fixture_shards, tmp_path):
    cfg = tiny_config(fixture_shards, steps=2, threads=1, **{"views.global_size": 64, "views.local_size": 32})
    run = tmp_path / "run"
    first = Trainer(cfg, run)
    first.run()
    first.close()
    p = process_context().Process(target=_save_and_die, args=(str(ckpt_path(run, 3)),))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    temps = list((run / "ckpt").glob("*.tmp*"))
    assert len(temps) == 1                                          # the torn partial file
    assert latest_checkpoint(run) == ckpt_path(run, 2)              # never taken for a checkpoint
    resumed = Trainer(load_train_config(None, cfg.model_dump() | {"steps": 3}), run, resume=True)
    assert not list((run / "ckpt").glob("*.tmp*"))                  # cleaned when the next run starts
    resumed.run()
    resumed.close()
    assert latest_checkpoint(run) == ckpt_path(run, 3)


def test_tiny_checkpoint_size_is_bounded(fixture_shards, tmp_path):
    # the main job's tiny preset: default head widths, 256 prototypes
    cfg = load_train_config(None, {"model": "sapiens2-tiny", "steps": 1, "threads": 1, "cl.out_dim": 256,
                                   "data.shards": str(fixture_shards), "data.batch_size": 2, "data.num_workers": 0,
                                   "data.shuffle_buffer": 4, "data.shuffle_initial": 2,
                                   "views.global_size": 64, "views.local_size": 32, "views.n_local": 1,
                                   "mae.mask_local": False})   # a 32 px local view is one cell: unmaskable
    assert (cfg.cl.hidden_dim, cfg.cl.bottleneck_dim, cfg.mae.decoder_dim) == (256, 64, 64)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run()
    trainer.close()
    size = trainer.last_ckpt.stat().st_size
    backbone_bytes = sum(p.numel() * 4 for p in trainer.model.encoder.backbone.parameters())
    print(f"tiny checkpoint {size / 1e6:.2f} MB, backbone {backbone_bytes / 1e6:.2f} MB")
    # student + teacher + two Adam moments of everything: at most ~10x the backbone (was 87x, 112.7 MB)
    assert size < 10 * backbone_bytes and size < 16e6
