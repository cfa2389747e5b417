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
    # weights that do not match the run's backbone: every key named, nothing written
    from humans.pretrain.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    path = latest_checkpoint(tmp_path / "run" / "ckpt")
    state = load_checkpoint(path)
    state["teacher"].pop("backbone.norm.weight")
    state["teacher"]["backbone.extra.weight"] = torch.zeros(2)
    save_checkpoint({k: v for k, v in state.items() if k != "format"}, path)
    capsys.readouterr()
    assert main(["export", str(path), "--out", str(tmp_path / "bad.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "1 missing keys ['norm.weight']" in err and "1 unexpected keys ['extra.weight']" in err
    assert not (tmp_path / "bad.safetensors").exists()


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


def test_convert_released_command_names_bad_keys(tmp_path, capsys):
    """``python -m pretrain convert-released``: a released 4K checkpoint (tokenizer weights) and a
    file of unrelated tensors both stop with the offending keys named; nothing is written."""
    torch.save({"state_dict": {"backbone.cls_token": torch.zeros(1, 1, 64),
                               "backbone.tokenizer.w_cls": torch.zeros(1, 1, 64)}}, tmp_path / "r4k.pth")
    assert main(["convert-released", str(tmp_path / "r4k.pth"), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "tokenizer.w_cls" in capsys.readouterr().err
    torch.save({"foo": torch.zeros(2)}, tmp_path / "other.pth")
    assert main(["convert-released", str(tmp_path / "other.pth"), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "no 'cls_token' key" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
