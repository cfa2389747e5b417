"""Warm start (``init``): a new run starts from another run's weights at another view size, with a
fresh optimizer and step; a mae run seeds a mae+cl run (CL head fresh); a mismatched backbone is a
clear error; --resume of the new run continues its own checkpoint, not the init source."""
from __future__ import annotations

import pytest
import torch

from humans.pretrain.cli import main
from humans.pretrain.trainer import Trainer
from humans.shared.backbone import CheckpointMismatch
from pretrain_testlib import tiny_config

BIG = {"views.global_size": 128, "views.local_size": 64}


def _backbone_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.encoder.backbone.state_dict().items()}


def test_warm_start_at_a_larger_view_size(fixture_shards, tmp_path):
    first = Trainer(tiny_config(fixture_shards, steps=3, threads=1, objective="mae", **{"views.global_size": 64,
                                                                                      "views.local_size": 64}),
                    tmp_path / "stage1")
    first.run()
    trained = _backbone_state(first)
    decoder = {k: v.clone() for k, v in first.model.decoder.state_dict().items()}
    first.close()
    fresh = Trainer(tiny_config(fixture_shards, steps=2, threads=1, objective="mae", **BIG), tmp_path / "cold")
    assert not torch.equal(fresh.model.encoder.backbone.patch_embed.weight, trained["patch_embed.weight"])
    fresh.close()

    second = Trainer(tiny_config(fixture_shards, steps=2, threads=1, objective="mae", init=str(tmp_path / "stage1"),
                                 **BIG), tmp_path / "stage2")
    assert second.step == 0 and second.init_summary["step"] == 3 and second.init_summary["fresh"] == []
    for k, v in second.model.encoder.backbone.state_dict().items():
        assert torch.equal(v, trained[k]), k
    for k, v in second.model.decoder.state_dict().items():
        assert torch.equal(v, decoder[k]), k
    # fresh optimizer: no moments carried over, the schedule starts at its warm-up
    assert all(not s for s in second.optimizer.state.values())
    assert second.scheduler.get_last_lr()[0] < second.cfg.optim.lr
    second.run()
    assert second.step == 2
    assert not torch.equal(second.model.encoder.backbone.patch_embed.weight, trained["patch_embed.weight"])
    second.close()

    # --resume of the new run continues its own checkpoint, not the init source
    again = Trainer(tiny_config(fixture_shards, steps=3, threads=1, objective="mae", init=str(tmp_path / "stage1"),
                                **BIG), tmp_path / "stage2", resume=True)
    assert again.step == 2 and again.init_summary is None
    assert not torch.equal(again.model.encoder.backbone.patch_embed.weight, trained["patch_embed.weight"])
    again.close()


def test_warm_start_mae_into_mae_cl_and_from_safetensors(fixture_shards, tmp_path):
    first = Trainer(tiny_config(fixture_shards, steps=2, threads=1, objective="mae", **BIG), tmp_path / "mae")
    first.run()
    trained = _backbone_state(first)
    first.close()
    both = Trainer(tiny_config(fixture_shards, steps=1, threads=1, objective="mae+cl", init=str(tmp_path / "mae"),
                               **BIG), tmp_path / "both")
    fresh = both.init_summary["fresh"]
    assert fresh and all(k.startswith(("encoder.head.", "cl_loss.")) for k in fresh), fresh
    assert both.init_summary["teacher"] == "student copy"
    for k, v in both.teacher.backbone.state_dict().items():        # the teacher starts as the warm student
        assert torch.equal(v, trained[k]), k
    both.close()

    out = tmp_path / "mae.safetensors"
    assert main(["export", str(tmp_path / "mae"), "--out", str(out)]) == 0
    from_file = Trainer(tiny_config(fixture_shards, steps=1, threads=1, objective="mae", init=str(out), **BIG),
                        tmp_path / "from_file")
    assert from_file.init_summary["step"] is None
    assert all(k.startswith("decoder.") for k in from_file.init_summary["fresh"])
    for k, v in from_file.model.encoder.backbone.state_dict().items():
        assert torch.equal(v, trained[k]), k
    from_file.close()


def test_warm_start_errors_name_the_problem(fixture_shards, tmp_path):
    first = Trainer(tiny_config(fixture_shards, steps=1, threads=1, objective="mae", **BIG), tmp_path / "tiny")
    first.run()
    first.close()
    other = tiny_config(fixture_shards, steps=1, threads=1, objective="mae", init=str(tmp_path / "tiny"),
                        model_overrides={"embed_dim": 96}, **BIG)
    with pytest.raises(CheckpointMismatch, match="shape mismatches"):
        Trainer(other, tmp_path / "other")
    missing = tiny_config(fixture_shards, steps=1, threads=1, objective="mae", init=str(tmp_path / "nowhere"), **BIG)
    with pytest.raises(FileNotFoundError, match="init: no checkpoint at"):
        Trainer(missing, tmp_path / "missing")
