"""Evaluation of a head (or of the mean-prediction baseline) against labels at the original resolution.

Outputs are made at the network size and mapped back: pose heatmaps are decoded (argmax + quarter
offset), optionally averaged with the flipped crop's heatmaps (flip test), and mapped through the
inverse crop transform into image pixels; dense outputs are bilinearly resized to the image size (seg
logits before the argmax, normals renormalised). ``mean_baseline`` builds the trivial predictor: the
mean of the training targets (pose: mean keypoint position in the crop; dense tasks: the per-pixel
mean map, seg as per-pixel class frequencies).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData, Item
from humans.heads.data.features import FeatureCache, FeatureExtractor
from humans.heads.models.model import load_model
from humans.heads.prepare import TaskTensors, prepare_task
from humans.heads.tasks import get_task
from humans.shared.atomic import atomic_write_json

OutputFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]  # (features, images) -> outputs


def make_metric(task: str, coco_dir: str | Path | None = None):
    """The task's metric accumulator (``TaskSpec.metric``); pose with ``coco_dir`` writes its COCO files there."""
    return get_task(task).metric(coco_dir)


def flip_back(out: torch.Tensor, task: str) -> torch.Tensor:
    """Map the output of a mirrored input back to the original orientation (``TaskSpec.flip_back``)."""
    return get_task(task).flip_back(out)


@torch.no_grad()
def evaluate_outputs(fn: OutputFn, tt: TaskTensors, data: DenseData, cfg: HeadConfig, batch: int = 16,
                     device: str | torch.device = "cpu", coco_dir: str | Path | None = None) -> dict:
    """Metrics of ``fn`` ((features [B,C,h,w], images [B,3,h,w] or None) -> outputs) over ``tt``,
    run on ``device`` batch by batch (features read from the memory-mapped cache per batch).

    When ``tt`` holds flipped copies (its second half) and the task has a flip test, outputs are
    averaged with them (pose heatmaps). Pose with ``coco_dir``: COCO ``keypoints_gt.json`` +
    ``keypoints_results.json`` are written there and the AP is pycocotools' on those files.
    """
    spec = get_task(tt.task)
    flipped = bool(tt.flipped.any())
    n = len(tt) // 2 if flipped else len(tt)
    metric = spec.metric(coco_dir)
    for start in range(0, n, batch):
        idx = torch.arange(start, min(n, start + batch))
        img = tt.images(idx)
        out = fn(tt.feats[idx].to(device).float(), None if img is None else img.to(device)).float().cpu()
        if flipped and spec.flip_test:
            out = 0.5 * (out + spec.flip_back(fn(tt.feats[idx + n].to(device).float(), None).float().cpu()))
        for j, i in enumerate(idx.tolist()):
            item = tt.items[i]
            spec.update_metric(metric, out[j], data.load_target(item, tt.task),
                               {k: v[i] for k, v in tt.extra.items()}, cfg)
    return metric.compute()


def prepare_eval(data: DenseData, items: list[Item], cfg: HeadConfig, extractor: FeatureExtractor | None,
                 cache: FeatureCache | None = None, device: str | torch.device = "cpu") -> TaskTensors:
    """Features and labels of held-out ``items`` as evaluation reads them (with mirrored copies when the
    task has a flip test and ``cfg.flip_test``)."""
    flip = get_task(cfg.task).flip_test and cfg.flip_test
    return prepare_task(data, items, cfg, extractor, cache, flip=flip, device=device)


def evaluate_head(head, cfg: HeadConfig, data: DenseData, items: list[Item], extractor: FeatureExtractor | None,
                  cache: FeatureCache | None = None, device: str | torch.device = "cpu",
                  coco_dir: str | Path | None = None, tt: TaskTensors | None = None) -> dict:
    """Metrics of a trained head on ``items`` (flip test when the task has one and ``cfg.flip_test``);
    ``tt``: those items already prepared (``prepare_eval``), else they are prepared here."""
    if tt is None:
        tt = prepare_eval(data, items, cfg, extractor, cache, device)
    head.to(device).eval()
    out_hw = cfg.out_hw()
    return evaluate_outputs(lambda f, img: head(f, out_hw, img), tt, data, cfg, device=device, coco_dir=coco_dir)


def mean_baseline(train: TaskTensors, cfg: HeadConfig, per_pixel: bool = False) -> OutputFn:
    """The trivial predictor: one output for every input, the mean of the training targets.

    pose: heatmaps at the mean position of each keypoint in the crop. Dense tasks: the mean over all
    labelled training pixels (one class-frequency vector / normal / point / colour for every pixel),
    or with ``per_pixel`` the mean map of each pixel position (a spatial prior; a stronger baseline).
    ``TaskSpec.mean_output`` makes the one output.
    """
    const = get_task(train.task).mean_output(train.targets, cfg, per_pixel)
    return lambda f, img=None: const[None].expand(f.shape[0], *const.shape).to(f.device)


def run_eval(checkpoint: str, data_dir: str, out_json: str | None = None, backbone: str | None = None,
             keypoints: str | None = None, cache_dir: str | None = None, split: str = "all",
             device: str = "cpu") -> dict:
    """The ``eval`` command: metrics of a checkpoint on a DATA folder (all images, or its held-out split)."""
    model = load_model(checkpoint, backbone)
    cfg = model.config
    data = DenseData(data_dir, keypoints)
    keys = data.keys if split == "all" else data.split(cfg.val_frac, cfg.seed)[1 if split == "val" else 0]
    items = data.items(cfg.task, keys)
    if not items:
        raise ValueError(f"{data_dir}: no labelled samples for task {cfg.task!r}")
    spec = get_task(cfg.task)
    coco_dir = spec.eval_files(out_json)
    metrics = evaluate_head(model.head, cfg, data, items, model.extractor, FeatureCache(cache_dir),
                           device=device, coco_dir=coco_dir)
    result = {"task": cfg.task, "checkpoint": str(checkpoint), "data": str(data_dir), "split": split,
              "samples": len(items), "metrics": metrics, **spec.eval_record(coco_dir)}
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_json, result, sort_keys=False)
    return result
