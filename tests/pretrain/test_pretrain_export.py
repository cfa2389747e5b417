"""Export: checkpoint -> backbone.safetensors that shared.backbone.load_backbone reads back exactly;
config validation errors name key, value and what is allowed."""
from __future__ import annotations

import pytest
import torch

from humans.pretrain.cli import main
from humans.pretrain.config import load_train_config
from humans.pretrain.trainer import Trainer
from pretrain_testlib import tiny_config
from humans.shared.backbone import load_backbone
from humans.shared.config import ConfigError


def test_export_teacher_and_student_backbones(fixture_shards, tmp_path, capsys):
    cfg = tiny_config(fixture_shards, steps=2, threads=1, **{"views.global_size": 64, "views.local_size": 32})
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run()
    trainer.close()
    x = torch.rand(1, 3, 64, 96)
    for weights, module in (("auto", trainer.teacher.backbone), ("student", trainer.model.encoder.backbone)):
        out = tmp_path / f"{weights}.safetensors"
        assert main(["export", str(tmp_path / "run" / "ckpt"), "--out", str(out), "--weights", weights]) == 0
        loaded = load_backbone(out)
        for k, v in module.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k
        with torch.no_grad():
            assert torch.equal(loaded(x).cls, module.eval()(x).cls)
    assert not torch.equal(trainer.teacher.backbone.patch_embed.weight, trainer.model.encoder.backbone.patch_embed.weight)
    # MAE-only runs have no teacher: asking for it is a clear error
    cfg = tiny_config(fixture_shards, steps=1, threads=1, objective="mae", **{"views.global_size": 64})
    Trainer(cfg, tmp_path / "mae").run()
    assert main(["export", str(tmp_path / "mae"), "--out", str(tmp_path / "t.safetensors"), "--weights", "teacher"]) == 2
    assert "has no teacher" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "n.safetensors")]) == 2


def test_config_errors_name_key_value_and_allowed(fixture_shards, tmp_path):
    with pytest.raises(ConfigError, match=r"objective.*'both'.*mae.*cl"):
        load_train_config(None, {"objective": "both"})
    with pytest.raises(ConfigError, match=r"mae.mask_ratio|mask_ratio.*1.5"):
        load_train_config(None, {"mae.mask_ratio": 1.5})
    with pytest.raises(ConfigError, match=r"unknown key"):
        load_train_config(None, {"optim.learning_rate": 1e-3})
    cfg = tiny_config(fixture_shards, **{"views.global_size": 80})
    with pytest.raises(ConfigError, match=r"global_size.*80.*multiple of the backbone cell size 32"):
        Trainer(cfg, tmp_path / "bad")
