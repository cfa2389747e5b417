"""Surface normals: a unit vector per pixel (camera frame).

Labels ``DATA/normals/<key>.npy|.exr`` (unit vectors on the person, checked); output map: L2
normalisation (also after every resize); loss: (1 - cos) + L2 + gradient; metric: angular error
(mean, median, % under 11.25 / 22.5 / 30 degrees); overlay: (n + 1) / 2 as RGB; export: unit
vectors [B, 3, H, W] at the input size.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from humans.heads.data import transforms as T
from humans.heads.data.io import DENSE_EXTS, AnnotationError
from humans.heads.losses import normal_loss
from humans.heads.metrics import NormalMetric
from humans.heads.tasks.base import MapTask


class NormalTask(MapTask):
    name = "normal"
    label_folder = ("normals", DENSE_EXTS)
    metric_rows = (("mean_deg", "normal mean angle (deg)", False),
                   ("median_deg", "normal median angle (deg)", False),
                   ("<11.25", "normal % < 11.25 deg", True), ("<30", "normal % < 30 deg", True))

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        return F.normalize(y, dim=1, eps=1e-6)

    def upsample(self, y: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return F.normalize(super().upsample(y, hw), dim=1, eps=1e-6)

    def check(self, path, arr: np.ndarray, valid: np.ndarray) -> None:
        n = np.linalg.norm(arr, axis=-1)
        bad = valid & (np.abs(n - 1) > 0.05)
        if bad.any():
            raise AnnotationError(path, "normal", f"{int(bad.sum())} labelled pixels are not unit vectors "
                                                  f"(norm {float(n[bad][0]):.3g})")

    def flip_map(self, arr: np.ndarray) -> np.ndarray:
        return T.flip_vector_map(arr)

    def loss(self, pred, batch, w):
        return normal_loss(pred, batch["normal"], batch["valid"], w)

    def metric(self, coco_dir=None):
        return NormalMetric()

    def finish_mean(self, const: torch.Tensor) -> torch.Tensor:
        return F.normalize(const, dim=0, eps=1e-6)

    def overlay(self, img, pred, min_score=0.2):
        return np.clip((pred + 1) * 127.5, 0, 255).astype(np.uint8)


SPEC = NormalTask()
