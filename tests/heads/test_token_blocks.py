"""The dense heads' residual blocks at the token grid: they give a head context beyond its stem's few
tokens, the seg head has them by default, and head checkpoints written before them load as trained."""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from humans.heads.config import HeadConfig
from humans.heads.data.features import FeatureExtractor
from humans.heads.models.heads import DenseHead, TokenBlock
from humans.heads.models.model import HeadModel, load_model, make_head, save_head
from humans.shared.backbone import build_backbone, save_backbone

GRID = (12, 10)


def ring_task(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps with one marker token each (channel 0) and faint noise; label 1 on the tokens 3 or 4
    tokens (Chebyshev) from the marker, 0 elsewhere: a label that depends on what lies 3-4 tokens away."""
    h, w = GRID
    feats = torch.randn(n, 4, h, w, generator=g) * 0.1
    ys, xs = torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)
    feats[:, 0] = 0.0
    feats[torch.arange(n), 0, ys, xs] = 1.0
    dist = torch.maximum((torch.arange(h).view(1, h, 1) - ys.view(-1, 1, 1)).abs(),
                         (torch.arange(w).view(1, 1, w) - xs.view(-1, 1, 1)).abs())
    return feats, ((dist >= 3) & (dist <= 4)).long()


def ring_iou(token_blocks: int) -> float:
    """Held-out IoU of label 1 after 100 Adam steps of a seg head (no x2 steps) on ``ring_task``."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train_x, train_y = ring_task(256, g)
    val_x, val_y = ring_task(64, g)
    head = DenseHead("seg", 4, channels=32, num_up=0, image_skip=False, prior_hw=GRID, token_blocks=token_blocks)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(100):
        idx = torch.randint(0, len(train_x), (32,), generator=g)
        loss = F.cross_entropy(head(train_x[idx], GRID), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = head.eval()(val_x, GRID).argmax(1)
    return (((pred == 1) & (val_y == 1)).sum() / ((pred == 1) | (val_y == 1)).sum()).item()


def test_token_blocks_give_the_head_context_beyond_its_stem():
    # without blocks an output token sees the tokens within 1 (the stem's 3x3 conv): the ring is out of
    # its reach; two blocks (four more 3x3 convs) see 5 tokens away and learn it
    assert ring_iou(0) < 0.2
    assert ring_iou(2) > 0.9


def test_seg_has_token_blocks_by_default_and_old_checkpoints_load_as_trained(tmp_path):
    torch.manual_seed(0)
    backbone = build_backbone("study-s8", embed_dim=32, depth=2, num_heads=2, kv_heads=1, ffn_dim=64)
    bb = save_backbone(backbone, tmp_path / "bb.safetensors")
    cfg = HeadConfig(task="seg", backbone=str(bb), size=(64, 48))
    seg = make_head(cfg, backbone)
    assert sum(isinstance(m, TokenBlock) for m in seg.modules()) == 4 and seg.final.in_channels == 32   # 64 -> 32
    normal = make_head(HeadConfig(task="normal", backbone=str(bb), size=(64, 48)), backbone)
    assert not any(isinstance(m, TokenBlock) for m in normal.modules()) and normal.final.in_channels == 64
    x = torch.rand(2, 3, 64, 48)
    path = save_head(tmp_path / "seg.safetensors", seg, cfg)
    with torch.no_grad():
        torch.testing.assert_close(load_model(path)(x), HeadModel(FeatureExtractor(backbone, cfg.layers),
                                                                  seg.eval(), cfg).eval()(x))
    # a seg checkpoint written before the blocks: 128 wide, none, and no "token_blocks" in its config
    old_cfg = cfg.model_copy(update={"channels": 128, "token_blocks": 0})
    old_head = make_head(old_cfg, backbone)
    old = save_head(tmp_path / "old.safetensors", old_head, old_cfg)
    with safe_open(str(old), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    config.pop("token_blocks")
    config["channels"] = None
    save_file(tensors, str(old), metadata={**meta, "config": json.dumps(config)})
    model = load_model(old)
    assert model.config.token_blocks == 0 and model.config.channels == 128
    with torch.no_grad():
        torch.testing.assert_close(model(x), HeadModel(FeatureExtractor(backbone, cfg.layers), old_head.eval(),
                                                       old_cfg).eval()(x))
