"""Dense human tasks on a frozen backbone: pose (308 keypoints), body-part segmentation (29 classes),
pointmap, surface normals and albedo; full heads, linear probes, training, evaluation, prediction
overlays and export. Entry point: ``python -m heads`` (see ``heads.cli``)."""
from __future__ import annotations

from humans.heads.tasks import TASKS  # the task registry (one spec module per task: heads/tasks/)

__all__ = ["TASKS"]
