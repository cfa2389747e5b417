"""Body-part segmentation: 29 classes per pixel (``shared.humans.parts``; 255 = ignore).

Labels ``DATA/parts/<key>.png`` (indexed PNG, pixel value = class); output: 29 logits; loss:
cross-entropy + soft Dice; metric: mIoU, pixel accuracy and part-boundary F1; overlay: part colours blended over the
image; export: logits [B, 29, H, W] at the input size, and ``predict`` writes the class map as
``<image>_seg.npy`` and as an indexed PNG ``<image>_seg_parts.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from humans.heads.data import transforms as T
from humans.heads.data.io import read_parts
from humans.heads.losses import seg_loss
from humans.heads.metrics import SegMetric
from humans.heads.tasks.base import PRIOR_SHRINK, WholeImageTask
from humans.shared.humans.parts import NUM_PARTS, PART_COLORS, PART_NAMES


def part_counts(parts: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """``parts`` [N, h, w] class labels -> ([h, w, C] how many images have each class at each pixel, [h, w]
    how many have a class there at all); labels >= NUM_PARTS (255: ignored) are not counted. Counted by
    ``bincount`` over ``chunk`` images at a time: a one-hot of every label at once takes N*h*w*C*8 bytes,
    21 GB for the seg head at 9600 images with flips, which a 24 GB machine does not survive."""
    n, h, w = parts.shape
    counts = torch.zeros(h * w * NUM_PARTS, dtype=torch.float64)
    pos = torch.arange(h * w) * NUM_PARTS
    for i in range(0, n, chunk):
        p = parts[i:i + chunk].reshape(-1, h * w).long()
        ok = p < NUM_PARTS
        counts += torch.bincount((pos + p)[ok], minlength=h * w * NUM_PARTS).double()
    counts = counts.view(h, w, NUM_PARTS).float()
    return counts, counts.sum(-1)


class SegTask(WholeImageTask):
    name = "seg"
    truth_key = "parts"
    channels = NUM_PARTS
    label_folder = ("parts", (".png",))
    metric_rows = (("mIoU", "seg mIoU", True), ("pixel_acc", "seg pixel acc.", True),
                   ("boundary_F1", "seg boundary F1", True))
    # context across tokens pays for seg (which part a pixel is depends on where it sits in the body) and
    # not for the local maps (normals level, albedo and pointmap a little worse): 4 residual blocks at
    # width 64 cost 10 % more time than the old 128-wide head without them (88-92 s vs 80 s for the main
    # job's seg head); mIoU 0.085 -> 0.097
    # (benchmarks/results/heads.md)
    default_width = 64
    default_token_blocks = 4

    def load_target(self, data, item) -> dict:
        return {"parts": read_parts(data.label_path(self.name, item.key), NUM_PARTS, data.image_hw(item.key))}

    def resize_labels(self, target: dict, size, flip: bool) -> dict:
        parts = T.resize_nearest(target["parts"], size)
        return {"parts": T.flip_parts(parts) if flip else parts}

    def label_hw(self, target: dict) -> tuple[int, int]:
        return target["parts"].shape[:2]

    def batch_targets(self, targets, idx, cfg):
        return {"parts": targets["parts"][idx].long()}

    def loss(self, pred, batch, w):
        return seg_loss(pred, batch["parts"], dice_weight=w.dice, balance=w.seg_balance)

    def metric(self, coco_dir=None):
        return SegMetric(NUM_PARTS, PART_NAMES)

    def update_dense(self, metric, up: torch.Tensor, target: dict) -> None:
        metric.update(up.argmax(0).numpy(), target["parts"])

    def mean_output(self, targets, cfg, per_pixel: bool) -> torch.Tensor:
        counts, _ = part_counts(targets["parts"])
        freq = counts / len(targets["parts"])  # [h,w,C] class frequencies
        if not per_pixel:
            freq = freq.mean((0, 1), keepdim=True).expand_as(freq)
        return torch.log(freq.permute(2, 0, 1) + 1e-6)

    def prior(self, targets, cfg) -> torch.Tensor:
        """Log of the per-pixel class frequencies (shrunk towards the global ones by ``PRIOR_SHRINK``
        pseudo-labels, as the map tasks' means), mixed 95 : 5 with uniform so that no class starts at a
        logit the first steps cannot move."""
        counts, labelled = part_counts(targets["parts"])  # 255: ignored
        glob = counts.sum((0, 1)) / counts.sum().clamp_min(1)
        freq = ((counts + PRIOR_SHRINK * glob) / (labelled[..., None] + PRIOR_SHRINK)).permute(2, 0, 1)
        return torch.log(0.95 * freq + 0.05 / NUM_PARTS)

    def decode(self, up: torch.Tensor) -> np.ndarray:
        return up.argmax(0).numpy().astype(np.uint8)

    def overlay(self, img, pred, min_score=0.2):
        col = PART_COLORS[np.clip(pred, 0, len(PART_COLORS) - 1)]
        fg = (pred > 0)[..., None]
        return np.where(fg, (0.4 * img + 0.6 * col), img).astype(np.uint8)

    def write_prediction(self, out: Path, stem: str, pred: np.ndarray) -> list[Path]:
        from humans.shared.synth.writer import encode_parts_png

        path = out / f"{stem}_parts.png"
        path.write_bytes(encode_parts_png(pred))
        return [path]


SPEC = SegTask()
