"""Dense decoders as the seed: trained at half the input resolution, bilinear to full size at
inference; the 4K path (a ``-4k`` config at reduced width, 3840x2160 input) end to end; head
checkpoints load strictly."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from humans.heads.config import HeadConfig
from humans.heads.data.features import FeatureExtractor
from humans.heads.models.model import HeadModel, load_model, make_head, save_head
from humans.shared.backbone import CheckpointMismatch, build_backbone, save_backbone

# sapiens2-0.4b-4k's scheme (window 4 x 4 patches, pool stride 4, registers, normalised RoPE) at width 32
REDUCED_4K = dict(embed_dim=32, num_heads=2, kv_heads=1, depth=4, window_layers=2, mha_edge=0, ffn_dim=64)


def test_4k_path_outputs_half_resolution_then_full(tmp_path):
    torch.manual_seed(0)
    backbone = build_backbone("sapiens2-0.4b-4k", **REDUCED_4K)
    path = save_backbone(backbone, tmp_path / "bb4k.safetensors")
    cfg = HeadConfig(task="normal", backbone=str(path), size=(2160, 3840), channels=8,
                     backbone_config=backbone.config.model_dump(mode="json"))
    assert cfg.label_stride == 2 and cfg.out_hw() == (1080, 1920)      # the seed's 2K for 4K input
    head = make_head(cfg, backbone)
    model = HeadModel(FeatureExtractor(backbone, cfg.layers), head, cfg).eval()
    x = torch.rand(1, 3, 2160, 3840)
    seen = {}
    model.extractor.register_forward_hook(lambda m, i, o: seen.update(feats=o))
    head.register_forward_hook(lambda m, i, o: seen.update(raw=o))
    with torch.no_grad():
        full = model(x)
    feats, raw = seen["feats"], seen["raw"]
    assert feats.shape[-2:] == (34, 60)                 # 135 x 240 patches pooled by 4 (padded)
    assert raw.shape == (1, 3, 1080, 1920) and full.shape == (1, 3, 2160, 3840)
    torch.testing.assert_close(full.norm(dim=1), torch.ones(1, 2160, 3840))   # unit normals
    # full = bilinear resize of the half-resolution output (then renormalised)
    up = torch.nn.functional.interpolate(raw, size=(2160, 3840), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, torch.nn.functional.normalize(up, dim=1, eps=1e-6))


def test_head_checkpoint_loads_strictly(tmp_path):
    torch.manual_seed(0)
    backbone = build_backbone("sapiens2-tiny")
    bb = save_backbone(backbone, tmp_path / "bb.safetensors")
    cfg = HeadConfig(task="seg", backbone=str(bb), size=(64, 48), channels=16)
    path = save_head(tmp_path / "head.safetensors", make_head(cfg, backbone), cfg)
    model = load_model(path)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 48)).shape == (1, 29, 64, 48)   # full size at inference
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    dropped = sorted(tensors)[0]
    tensors.pop(dropped)
    tensors["stem.9.weight"] = torch.zeros(2)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointMismatch) as e:
        load_model(path)
    assert dropped in str(e.value) and "stem.9.weight" in str(e.value) and "seg head head" in str(e.value)


def test_shuffle_upsampling_round_trips_and_bad_value_is_named(tmp_path):
    torch.manual_seed(0)
    backbone = build_backbone("sapiens2-tiny")
    bb = save_backbone(backbone, tmp_path / "bb.safetensors")
    cfg = HeadConfig(task="normal", backbone=str(bb), size=(64, 48), channels=16)
    assert cfg.upsample == "shuffle"                                 # the default
    head = make_head(cfg, backbone)
    shuffles = [m for m in head.modules() if isinstance(m, torch.nn.PixelShuffle)]
    assert len(shuffles) == len(head.up) // 4 >= 1               # one PixelShuffle per x2 step (4 modules each)
    finer = make_head(cfg.model_copy(update={"dense_stride": 2}), backbone)   # one more x2 step: to stride 2
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in finer.modules()) == len(shuffles) + 1
    bilinear = make_head(cfg.model_copy(update={"upsample": "bilinear"}), backbone)
    # each x2 step's conv has 4x the output channels at half the resolution: the same multiply-adds,
    # more weights
    assert sum(p.numel() for p in head.parameters()) > sum(p.numel() for p in bilinear.parameters())
    path = save_head(tmp_path / "head.safetensors", head, cfg)
    model = load_model(path).eval()
    assert model.config.upsample == "shuffle"
    x = torch.rand(2, 3, 64, 48)
    ref = HeadModel(FeatureExtractor(backbone, cfg.layers), head.eval(), cfg).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))
    with pytest.raises(ValueError, match="shuffle"):
        HeadConfig(task="normal", upsample="nearest")
    # a checkpoint written before these choices (no "upsample", no "loss.seg_balance") records the old ones
    old_cfg = cfg.model_copy(update={"upsample": "bilinear"})
    old = save_head(tmp_path / "old.safetensors", bilinear, old_cfg)
    with safe_open(str(old), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    config.pop("upsample")
    config["loss"].pop("seg_balance")
    save_file(tensors, str(old), metadata={**meta, "config": json.dumps(config)})
    assert load_model(old).config.upsample == "bilinear"
    assert load_model(old).config.loss.seg_balance == 0.0                 # and plain cross-entropy
