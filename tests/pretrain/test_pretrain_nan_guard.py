"""A NaN/inf loss stops the run before the optimizer step, naming the step and the last good checkpoint."""
from __future__ import annotations

import pytest
import torch

from humans.pretrain.checkpoint import list_checkpoints, load_checkpoint
from humans.pretrain.trainer import NonFiniteLossError, Trainer

from pretrain_testlib import tiny_config


def test_nan_loss_stops_with_step_and_last_good_checkpoint(fixture_shards, tmp_path):
    cfg = tiny_config(fixture_shards, steps=8, threads=1, ckpt_every=2,
                      **{"views.global_size": 64, "views.local_size": 32})

    def poison(trainer: Trainer) -> None:   # a weight blows up after step 5 (after the step-4 checkpoint)
        if trainer.step == 5:
            with torch.no_grad():
                trainer.model.encoder.backbone.patch_embed.weight[0, 0, 0, 0] = float("nan")

    trainer = Trainer(cfg, tmp_path / "run", callbacks=[poison])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.run()
    trainer.close()
    err = info.value
    assert err.step == 6                                         # the first step computed with the NaN weight
    assert "non-finite loss at step 6" in str(err)
    assert "step_00000004.pt" in str(err) and str(tmp_path / "run" / "ckpt") in str(err)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_00000002.pt", "step_00000004.pt"]
    # the named checkpoint is good: finite weights, step 4
    state = load_checkpoint(err.last_ckpt)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nan_before_any_checkpoint_says_so(fixture_shards, tmp_path):
    cfg = tiny_config(fixture_shards, steps=4, threads=1, ckpt_every=100, lam=float("inf"),
                      **{"views.global_size": 64, "views.local_size": 32})
    trainer = Trainer(cfg, tmp_path / "run")
    with pytest.raises(NonFiniteLossError, match=r"step 1 .*Last good checkpoint: none"):
        trainer.run()
    trainer.close()
    assert list_checkpoints(tmp_path / "run") == []
