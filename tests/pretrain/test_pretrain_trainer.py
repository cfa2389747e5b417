"""Trainer options: the objective ablation switch, gradient checkpointing, metrics.csv, schedules."""
from __future__ import annotations

import csv
import math

import torch

from humans.pretrain.metrics import FIELDS
from humans.pretrain.trainer import Trainer, lr_factor
from pretrain_testlib import tiny_config

SMALL = {"views.global_size": 64, "views.local_size": 32}


def test_objectives_produce_only_their_losses_and_metrics_csv(fixture_shards, tmp_path):
    for objective, present, absent in (("mae", {"loss_mae"}, {"loss_cl"}), ("cl", {"loss_cl"}, {"loss_mae"})):
        cfg = tiny_config(fixture_shards, steps=2, threads=1, objective=objective, **SMALL)
        trainer = Trainer(cfg, tmp_path / objective)
        trainer.run()
        trainer.close()
        last = trainer.history[-1]
        assert present <= last.keys() and not absent & last.keys()
        assert (trainer.teacher is None) == (objective == "mae")
        assert not hasattr(trainer.model, "decoder") if objective == "cl" else hasattr(trainer.model, "decoder")
        rows = list(csv.DictReader((tmp_path / objective / "metrics.csv").open()))
        assert tuple(rows[0].keys()) == FIELDS and [r["step"] for r in rows] == ["1", "2"]
        assert float(rows[-1]["images_per_s"]) > 0 and float(rows[-1]["peak_mem_mb"]) > 0
        assert math.isclose(float(rows[-1]["loss"]), last["loss"], rel_tol=1e-5)


def test_gradient_checkpointing_gives_the_same_training(fixture_shards, tmp_path):
    weights = []
    for gc in (False, True):
        cfg = tiny_config(fixture_shards, steps=2, threads=1, grad_checkpointing=gc, **SMALL)
        trainer = Trainer(cfg, tmp_path / str(gc))
        trainer.run()
        weights.append(trainer.model.encoder.backbone.blocks[0].attn.qkv.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_learning_rate_schedule_warms_up_then_decays_to_min():
    f = [lr_factor(s, 100, 10, 0.01) for s in range(100)]
    assert f[0] == 0.1 and f[9] == 1.0 and f[10] == 1.0
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and abs(f[99] - 0.01) < 1e-3
