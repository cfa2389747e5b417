"""Head architectures on frozen features [B, C, h, w] (h, w = output grid of the backbone).

Both full heads first append two coordinate channels (normalised x, y) to the features, since a
backbone with rotary position encoding gives features without absolute position.

- ``PoseHead``: a deconvolution stack (ConvTranspose 4x4 stride 2 + BN + ReLU, as in SimpleBaseline /
  Sapiens) from the grid up to stride 4, then a 1x1 convolution to 308 heatmaps;
- ``DenseHead``: 3x3 conv, then ``token_blocks`` residual 3x3 conv blocks at the token grid (context
  across neighbouring tokens where convolutions are cheapest: the seg head's default, 4 blocks at
  width 64, lifts mIoU from 0.085 to 0.097 for 10 % more time), then x2 blocks up to stride 4 (``upsample="bilinear"``: bilinear x2 + 3x3
  conv + BN + ReLU; ``"shuffle"``: 3x3 conv to 4x the channels + PixelShuffle(2) + BN + ReLU, the same
  multiply-adds, but each token places its own 2x2 sub-cells instead of blending with its neighbours), resized to
  the output size, then (with ``image_skip``) the input image concatenated and a 3x3 conv + BN + ReLU
  (a skip connection carrying pixel-level detail that coarse tokens lack), then a 1x1 convolution to
  the task's channels (seg: 29 logits; pointmap: X, Y, Z; normal: unit vectors; albedo: RGB through a
  sigmoid), added to ``prior``: a fixed map of raw outputs [C, h, w] (``TaskSpec.prior``: the training
  labels' per-pixel mean, set by ``heads.train`` when ``HeadConfig.mean_prior``; zeros otherwise). The
  1x1 convolution starts small (std 0.02), so a head starts at about the mean-prediction baseline and
  learns the residual the features explain;
- ``LinearProbe``: one 1x1 linear layer on the features (after a parameter-free batch-norm
  standardisation, itself a fixed linear map at evaluation) and bilinear upsampling: no decoder, no
  skip connections.

All heads take ``out_hw`` (the output size: heatmap size for pose, input size / label_stride for
dense tasks) and the [0, 1] input image (used by the dense heads' skip connection only), and apply
the task's output map (normalisation for normals, sigmoid for albedo).
"""
from __future__ import annotations

import math
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from humans.heads.config import Upsample
from humans.heads.tasks import get_task

KINDS = ("head", "linear")
UPSAMPLES = get_args(Upsample)  # DenseHead's x2 steps
DECODERS = {"deconv": "PoseHead", "dense": "DenseHead"}  # TaskSpec.decoder -> full head class


def num_upsamplings(cell_size: int, target_stride: int = 4) -> int:
    """x2 steps from the backbone's grid (``cell_size`` pixels per cell) to ``target_stride``."""
    return max(0, int(round(math.log2(max(cell_size, 1) / target_stride))))


def finish(task: str, y: torch.Tensor) -> torch.Tensor:
    """The task's output map applied to raw head outputs (``TaskSpec.finish``)."""
    return get_task(task).finish(y)


def add_coords(feats: torch.Tensor) -> torch.Tensor:
    """Append two channels of normalised x and y (-1..1) to ``feats`` (CoordConv): backbones with
    rotary (relative) position encoding carry no absolute position, which dense heads need."""
    b, _, h, w = feats.shape
    ys = torch.linspace(-1.0, 1.0, h, dtype=feats.dtype, device=feats.device).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1.0, 1.0, w, dtype=feats.dtype, device=feats.device).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([feats, xs, ys], dim=1)


def _resize(y: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    if tuple(y.shape[-2:]) == tuple(out_hw):
        return y
    return F.interpolate(y, size=tuple(int(v) for v in out_hw), mode="bilinear", align_corners=False)


class PoseHead(nn.Module):
    def __init__(self, in_channels: int, num_keypoints: int = 308, channels: int = 256, num_deconv: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels + 2  # + coordinate channels
        for _ in range(num_deconv):
            layers += [nn.ConvTranspose2d(c, channels, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            c = channels
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(c, num_keypoints, 1)
        # SimpleBaseline's init: near-zero heatmaps at the start, so the faint early peaks are not
        # drowned in the noise of a default-initialised output layer
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, feats: torch.Tensor, out_hw: tuple[int, int], image: torch.Tensor | None = None) -> torch.Tensor:
        return _resize(self.final(self.deconv(add_coords(feats))), out_hw)


class TokenBlock(nn.Module):
    """Residual 3x3 conv block at the token grid: conv-BN-ReLU-conv-BN added to the input, then ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class DenseHead(nn.Module):
    def __init__(self, task: str, in_channels: int, channels: int = 128, num_up: int = 2, image_skip: bool = True,
                 prior_hw: tuple[int, int] = (1, 1), upsample: str = "shuffle", token_blocks: int = 0):
        super().__init__()
        if upsample not in UPSAMPLES:
            raise ValueError(f"{task} head upsample {upsample!r}: allowed {', '.join(UPSAMPLES)}")
        self.task = task
        self.image_skip = image_skip
        self.stem = nn.Sequential(nn.Conv2d(in_channels + 2, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  *[TokenBlock(channels) for _ in range(token_blocks)])
        blocks: list[nn.Module] = []
        c = channels
        for _ in range(num_up):
            c2 = max(c // 2, 32)
            if upsample == "shuffle":
                blocks += [nn.Conv2d(c, 4 * c2, 3, padding=1, bias=False), nn.PixelShuffle(2)]
            else:
                blocks += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                           nn.Conv2d(c, c2, 3, padding=1, bias=False)]
            blocks += [nn.BatchNorm2d(c2), nn.ReLU(inplace=True)]
            c = c2
        self.up = nn.Sequential(*blocks)
        if image_skip:
            self.refine = nn.Sequential(nn.Conv2d(c + 3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                        nn.ReLU(inplace=True))
        self.final = nn.Conv2d(c, get_task(task).channels, 1)
        nn.init.normal_(self.final.weight, std=0.02)  # start close to the prior (the mean map when set)
        nn.init.zeros_(self.final.bias)
        self.register_buffer("prior", torch.zeros(get_task(task).channels, *(int(v) for v in prior_hw)))

    def set_prior(self, prior: torch.Tensor) -> None:
        """Set the fixed map of raw outputs [C, h, w] the head adds its output to (resized to the
        buffer's size, which is the head's training output size)."""
        if prior.dim() != 3 or prior.shape[0] != self.prior.shape[0]:
            raise ValueError(f"{self.task} head prior: expected [{self.prior.shape[0]}, h, w], got {list(prior.shape)}")
        self.prior.copy_(_resize(prior[None].to(self.prior), tuple(self.prior.shape[-2:]))[0])

    def forward(self, feats: torch.Tensor, out_hw: tuple[int, int], image: torch.Tensor | None = None) -> torch.Tensor:
        y = _resize(self.up(self.stem(add_coords(feats))), out_hw)
        if self.image_skip:
            if image is None:
                raise ValueError(f"the {self.task} head has an image skip connection: pass the input image")
            y = self.refine(torch.cat([y, _resize(image, out_hw) - 0.5], dim=1))
        return finish(self.task, self.final(y) + _resize(self.prior[None], out_hw))


class LinearProbe(nn.Module):
    def __init__(self, task: str, in_channels: int):
        super().__init__()
        self.task = task
        self.norm = nn.BatchNorm2d(in_channels, affine=False)
        self.linear = nn.Conv2d(in_channels, get_task(task).channels, 1)
        if get_task(task).small_init:  # near-zero start, as the pose head (flat maps otherwise win short runs)
            nn.init.normal_(self.linear.weight, std=0.001)
            nn.init.zeros_(self.linear.bias)

    def forward(self, feats: torch.Tensor, out_hw: tuple[int, int], image: torch.Tensor | None = None) -> torch.Tensor:
        return finish(self.task, _resize(self.linear(self.norm(feats)), out_hw))


def build_head(task: str, kind: str, in_channels: int, cell_size: int, channels: int | None = None,
               image_skip: bool = True, out_hw: tuple[int, int] = (1, 1), upsample: str = "shuffle",
               dense_stride: int = 4, token_blocks: int | None = None) -> nn.Module:
    """The head of ``task`` (``kind`` "head" or "linear") for features with ``in_channels`` channels;
    ``out_hw``: its training output size (the size of a dense head's prior map); ``dense_stride``: the
    stride in input pixels a dense head's x2 steps reach before the resize to ``out_hw``; ``channels`` and
    ``token_blocks``: None for the task's defaults (``TaskSpec.default_width``, ``default_token_blocks``)."""
    spec = get_task(task)
    if kind == "linear":
        return LinearProbe(task, in_channels)
    if kind != "head":
        raise ValueError(f"head kind {kind!r}: allowed {', '.join(KINDS)}")
    n = num_upsamplings(cell_size)
    width = channels or spec.default_width
    if spec.decoder == "deconv":
        return PoseHead(in_channels, spec.channels, width, n)
    if spec.decoder == "dense":
        return DenseHead(task, in_channels, width, num_upsamplings(cell_size, dense_stride), image_skip, out_hw,
                         upsample, spec.default_token_blocks if token_blocks is None else token_blocks)
    raise ValueError(f"task {task!r}: decoder {spec.decoder!r}; allowed {', '.join(DECODERS)}")
