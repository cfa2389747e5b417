"""Albedo: RGB reflectance in [0, 1] per pixel.

Labels ``DATA/albedo/<key>.png|.npy|.exr`` (valid everywhere unless DATA has person masks); output
map: sigmoid; loss: L2 + gradient + mean-colour alignment; metric: MAE and PSNR; overlay: the
predicted RGB; export: [B, 3, H, W] at the input size.
"""
from __future__ import annotations

import numpy as np
import torch

from humans.heads.data.io import ALBEDO_EXTS, read_albedo
from humans.heads.losses import albedo_loss
from humans.heads.metrics import AlbedoMetric
from humans.heads.tasks.base import MapTask


class AlbedoTask(MapTask):
    name = "albedo"
    label_folder = ("albedo", ALBEDO_EXTS)
    metric_rows = (("MAE", "albedo MAE", False), ("PSNR", "albedo PSNR (dB)", True))

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(y)

    def unfinish(self, mean: torch.Tensor) -> torch.Tensor:
        return torch.logit(mean.clamp(0.01, 0.99))

    def read(self, path, hw):
        return read_albedo(path, hw)

    def valid_without_mask(self, arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        return np.ones(hw, bool)

    def loss(self, pred, batch, w):
        return albedo_loss(pred, batch["albedo"], batch["valid"], w)

    def metric(self, coco_dir=None):
        return AlbedoMetric()

    def overlay(self, img, pred, min_score=0.2):
        return np.clip(pred * 255, 0, 255).astype(np.uint8)


SPEC = AlbedoTask()
