"""Typed configuration of a head run (validated at load; errors name key, value and allowed values).

A ``HeadConfig`` is stored as JSON in the metadata of ``RUN/head.safetensors``, so a checkpoint
carries everything needed to rebuild its model: task, head kind, backbone checkpoint path and config,
backbone layers, input size, normalisation and the training settings it was made with.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from humans.heads.tasks import REGISTRY, get_task
from humans.shared.config import StrictModel, load_config


Upsample = Literal["shuffle", "bilinear"]   # DenseHead's x2 steps (heads.models.heads)


class LossConfig(StrictModel):
    """Weights of the loss terms (the one loss-config type: ``heads.losses`` takes it as is; see the
    module docstring of ``heads.losses`` for the terms)."""

    l2: float = 1.0
    gradient: float = 1.0
    cosine: float = 1.0
    mean_colour: float = 1.0
    dice: float = 1.0
    seg_balance: float = Field(0.25, ge=0.0, le=1.0)  # seg cross-entropy class weights f_c ** -seg_balance
                                            # of the batch's class frequencies (0: plain CE; 0.25: mIoU 0.072 ->
                                            # 0.086, pixel acc. 0.859 -> 0.851; 0.5: 0.092 but pixel acc. at the
                                            # mean's; benchmarks/results/heads.md)
    ohem_ratio: float = Field(0.3, gt=0.0, le=1.0)
    pointmap_abs: float = 0.1               # weight of the absolute (not scale-aligned) pointmap L2


class HeadConfig(StrictModel):
    task: str                               # one of heads.tasks.REGISTRY
    kind: Literal["head", "linear"] = "head"
    backbone: str = ""                      # path of the backbone checkpoint (safetensors)
    backbone_config: dict = Field(default_factory=dict)  # the backbone's config, for the record
    layers: list[int] = Field(default_factory=lambda: [-1])
    size: tuple[int, int] = (256, 192)      # network input (H, W); pose: person crop size
    channels: int | None = None             # head width (None: the task's, TaskSpec.default_width: 256 for
                                            # pose, 64 for seg, 128 for the other dense heads)
    token_blocks: int | None = Field(None, ge=0)   # dense heads: residual 3x3 conv blocks at the token grid
                                            # after the stem (None: the task's, TaskSpec.default_token_blocks:
                                            # 4 for seg, 0 for the others)
    heatmap_stride: int = 4
    label_stride: int = Field(2, ge=1)      # dense tasks: output (and train) at input size / label_stride
                                            # (2: half the input resolution, as the seed's decoders)
    image_skip: bool = False                # dense heads: also concatenate the input image before the last
                                            # convs (off: a head learns from the backbone's features only)
    upsample: Upsample = "shuffle"          # dense heads' x2 steps: a 3x3 conv to 4x the
                                            # channels + PixelShuffle (each token lays out its own 2x2 sub-cells,
                                            # as MAE's pixel decoder), or bilinear resize + 3x3 conv (the same
                                            # multiply-adds; seg mIoU 0.068 vs 0.072, normals 33.5 vs 32.5 deg:
                                            # benchmarks/results/heads.md)
    dense_stride: int = Field(4, ge=1)      # dense heads: x2 steps from the token grid down to this stride in
                                            # input pixels, then a bilinear resize to the output size
    mean_prior: bool = True                 # dense heads: add the output to the training labels' per-pixel
                                            # mean map (TaskSpec.prior), so a head starts near the mean baseline
    heatmap_sigma: float = 2.0
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    loss: LossConfig = Field(default_factory=LossConfig)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    flip_aug: bool = True                   # add horizontally flipped copies to training
    flip_test: bool = True                  # pose: average with the flipped image's heatmaps
    val_frac: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        if v not in REGISTRY:
            raise ValueError(f"allowed {', '.join(REGISTRY)}")
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one backbone layer is needed")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 16:
            raise ValueError("input size (H, W) must be at least 16 x 16")
        return v

    @property
    def heatmap_hw(self) -> tuple[int, int]:
        return (self.size[0] // self.heatmap_stride, self.size[1] // self.heatmap_stride)

    def out_hw(self) -> tuple[int, int]:
        """Size of the model output and training targets: heatmaps for pose, input size / label_stride
        for dense tasks (evaluation resizes outputs to each image's full resolution): ``TaskSpec.out_hw``."""
        return get_task(self.task).out_hw(self)


def load_head_config(path: str) -> HeadConfig:
    return load_config(path, HeadConfig)


def parse_layers(text: str) -> list[int]:
    """``"-1"`` or ``"3,5"`` -> list of ints (clear error otherwise)."""
    try:
        out = [int(t) for t in str(text).replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ValueError(f"--layers {text!r}: expected comma-separated integers such as -1 or 1,3") from None
    if not out:
        raise ValueError(f"--layers {text!r}: at least one layer")
    return out


def parse_size(text: str) -> tuple[int, int]:
    """``"192"`` (square) or ``"256x192"`` / ``"256,192"`` (H x W)."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        vals = [int(p) for p in parts if p]
    except ValueError:
        raise ValueError(f"--size {text!r}: expected H or HxW such as 256x192") from None
    if len(vals) == 1:
        return (vals[0], vals[0])
    if len(vals) == 2:
        return (vals[0], vals[1])
    raise ValueError(f"--size {text!r}: expected H or HxW such as 256x192")
