"""A frozen backbone and a head as one model, and head checkpoints (safetensors, no pickle).

``RUN/head.safetensors`` holds only the head's tensors; its metadata holds ``{"format":
"humans-head-v1", "config": HeadConfig JSON}`` (backbone path, backbone config, layers, size...), so
``load_model`` rebuilds backbone + head from the two files. ``HeadModel`` takes [0, 1] RGB images
[B, 3, H, W] and returns the task output (pose: heatmaps [B, 308, H/4, W/4]; seg: logits [B, 29, H, W];
pointmap / normal / albedo: [B, 3, H, W]) - the unit that ``export`` writes. Dense heads are trained
at input size / ``label_stride`` (default 2: half the input, as the seed's decoders); ``HeadModel``
resizes their output bilinearly to the full input size (normals renormalised).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from humans.heads.config import HeadConfig
from humans.heads.data.features import FeatureExtractor
from humans.heads.models.heads import DenseHead, build_head
from humans.heads.tasks import get_task
from humans.shared.atomic import atomic_path
from humans.shared.backbone import load_state_strict

HEAD_FORMAT = "humans-head-v1"


class HeadModel(nn.Module):
    def __init__(self, extractor: FeatureExtractor, head: nn.Module, config: HeadConfig):
        super().__init__()
        self.extractor = extractor
        self.head = head
        self.config = config
        self.spec = get_task(config.task)
        self.out_hw = tuple(config.out_hw())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spec.model_output(self.head(self.extractor(x), self.out_hw, x), tuple(x.shape[-2:]))


def make_head(cfg: HeadConfig, backbone: nn.Module) -> nn.Module:
    ex = FeatureExtractor(backbone, cfg.layers)
    return build_head(cfg.task, cfg.kind, ex.out_channels, ex.stride, cfg.channels, cfg.image_skip, cfg.out_hw(),
                      cfg.upsample, cfg.dense_stride, cfg.token_blocks)


def save_head(path: str | Path, head: nn.Module, cfg: HeadConfig) -> Path:
    """Write the head's tensors and config atomically as safetensors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": HEAD_FORMAT, "config": cfg.model_dump_json()})
    return path


def read_head(path: str | Path) -> tuple[HeadConfig, dict[str, torch.Tensor]]:
    """Config and tensors of a head checkpoint (clear errors for foreign files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"head checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise ValueError(f"{path}: not a safetensors head checkpoint ({exc})") from None
    if meta.get("format") != HEAD_FORMAT or "config" not in meta:
        raise ValueError(f"{path}: metadata field 'format' is {meta.get('format')!r}; expected {HEAD_FORMAT!r}")
    config = json.loads(meta["config"])
    config.setdefault("upsample", "bilinear")   # written before dense heads had the choice: they were bilinear
    config.setdefault("loss", {}).setdefault("seg_balance", 0.0)   # and trained with plain cross-entropy
    if "token_blocks" not in config:   # written before the token blocks: none, and the seg head 128 wide
        config["token_blocks"] = 0
        if config.get("task") == "seg" and config.get("channels") is None:
            config["channels"] = 128
    return HeadConfig.model_validate(config), tensors


def load_backbone_for(cfg: HeadConfig, backbone_path: str | None = None) -> nn.Module:
    from humans.shared.backbone import load_backbone

    path = backbone_path or cfg.backbone
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"backbone checkpoint {path!r} not found (the head was trained on it; pass "
                                "--backbone to point at its current location)")
    return load_backbone(path)


def load_model(checkpoint: str | Path, backbone_path: str | None = None) -> HeadModel:
    """Backbone + head from ``RUN/head.safetensors`` (and the backbone file it names)."""
    cfg, tensors = read_head(checkpoint)
    backbone = load_backbone_for(cfg, backbone_path)
    head = make_head(cfg, backbone)
    if isinstance(head, DenseHead) and "prior" not in tensors:  # written before dense heads had a prior map:
        tensors["prior"] = head.prior                            # zeros are exactly how they were trained
    load_state_strict(head, tensors, str(checkpoint), f"{cfg.task} {cfg.kind} head")
    model = HeadModel(FeatureExtractor(backbone, cfg.layers, cfg.pixel_mean, cfg.pixel_std), head, cfg)
    return model.eval()
