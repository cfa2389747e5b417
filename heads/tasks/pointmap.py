"""Pointmap: X, Y, Z per pixel in the camera frame, focal-normalised (known up to scale from one image).

Labels ``DATA/pointmap/<key>.npy|.exr``; loss: L2 + gradient on the scale-aligned prediction plus a
small absolute L2; metric: scale-invariant error (and error at the labelled keypoints); overlay: depth
(Z) through a colour map; export: [B, 3, H, W] at the input size.
"""
from __future__ import annotations

import numpy as np
import torch

from humans.heads.data import transforms as T
from humans.heads.data.io import DENSE_EXTS
from humans.heads.losses import pointmap_loss, pointmap_scale
from humans.heads.metrics import PointmapMetric
from humans.heads.tasks.base import MapTask


class PointmapTask(MapTask):
    name = "pointmap"
    label_folder = ("pointmap", DENSE_EXTS)
    metric_rows = (("si_error", "pointmap scale-inv. error", False),
                   ("kpt_error", "pointmap error at keypoints", False))

    def load_target(self, data, item) -> dict:
        out = super().load_target(data, item)
        people = data.people(item.key)
        out["keypoints"] = np.concatenate([p.keypoints for p in people]) if people else None
        return out

    def flip_map(self, arr: np.ndarray) -> np.ndarray:
        return T.flip_vector_map(arr)

    def mean_map(self, targets: dict[str, torch.Tensor], per_pixel: bool, shrink: float = 0.0) -> torch.Tensor:
        """The mean of the training pointmaps each divided by its scale (``pointmap_scale``): the mean
        prediction and the heads' prior. The raw mean blurs people at different distances into a worse
        shape: 0.151 against 0.233 si-error on the main job's head split, 0.157 against 0.250 on the
        probe's (2026-12-04 night)."""
        x = targets[self.name].float()
        s = pointmap_scale(x.permute(0, 3, 1, 2), targets["valid"])
        return super().mean_map({**targets, self.name: x / s[:, None, None, None]}, per_pixel, shrink)

    def loss(self, pred, batch, w):
        return pointmap_loss(pred, batch["pointmap"], batch["valid"], w)

    def metric(self, coco_dir=None):
        return PointmapMetric()

    def update_dense(self, metric, up, target) -> None:
        metric.update(self.decode(up), target["pointmap"], target["valid"], target.get("keypoints"))

    def overlay(self, img, pred, min_score=0.2):
        import matplotlib

        z = pred[..., 2]
        lo, hi = np.percentile(z, [2, 98])
        t = np.clip((z - lo) / max(hi - lo, 1e-6), 0, 1)
        return (matplotlib.colormaps["turbo"](1.0 - t)[..., :3] * 255).astype(np.uint8)


SPEC = PointmapTask()
