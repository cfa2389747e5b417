"""Pointmap: X, Y, Z per pixel in the camera frame, focal-normalised (known up to scale from one image).

Labels ``DATA/pointmap/<key>.npy|.exr``; loss: L2 + gradient on the scale-aligned prediction plus a
small absolute L2; metric: scale-invariant error (and error at the labelled keypoints); overlay: depth
(Z) through a colour map; export: [B, 3, H, W] at the input size.
"""
from __future__ import annotations

import numpy as np

from humans.heads.data import transforms as T
from humans.heads.data.io import DENSE_EXTS
from humans.heads.losses import pointmap_loss
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
