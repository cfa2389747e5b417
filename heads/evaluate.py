"""Evaluation of a head (or of the mean-prediction baseline) against labels at the original resolution.

Outputs are made at the network size and mapped back: pose heatmaps are decoded (argmax + quarter
offset), optionally averaged with the flipped crop's heatmaps (flip test), and mapped through the
inverse crop transform into image pixels; dense outputs are bilinearly resized to the image size (seg
logits before the argmax, normals renormalised). ``mean_baseline`` builds the trivial predictor: the
mean of the training targets (pose: mean keypoint position in the crop; dense tasks: the per-pixel
mean map, seg as per-pixel class frequencies).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData, Item
from humans.heads.data.features import FeatureCache, FeatureExtractor
from humans.heads.data.transforms import apply_affine, decode_heatmaps, gaussian_heatmaps, invert_affine
from humans.heads.metrics import AlbedoMetric, NormalMetric, PointmapMetric, PoseMetric, SegMetric
from humans.heads.train import TaskTensors, prepare_task
from humans.shared.humans.keypoints import SIGMAS, flip_index
from humans.shared.humans.parts import NUM_PARTS, PART_NAMES

OutputFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]  # (features, images) -> outputs


def make_metric(task: str, coco_dir: str | Path | None = None):
    """The task's metric accumulator; pose with ``coco_dir`` writes its COCO files there."""
    return {"pose": lambda: PoseMetric(SIGMAS, coco_dir=coco_dir), "seg": lambda: SegMetric(NUM_PARTS, PART_NAMES),
            "pointmap": PointmapMetric, "normal": NormalMetric, "albedo": AlbedoMetric}[task]()


def flip_back(out: torch.Tensor, task: str) -> torch.Tensor:
    """Map the output of a mirrored input back to the original orientation (pose heatmaps)."""
    if task != "pose":
        raise ValueError("flip test is implemented for pose")
    return out.flip(-1)[:, torch.from_numpy(flip_index())]


@torch.no_grad()
def evaluate_outputs(fn: OutputFn, tt: TaskTensors, data: DenseData, cfg: HeadConfig, batch: int = 16,
                     device: str | torch.device = "cpu", coco_dir: str | Path | None = None) -> dict:
    """Metrics of ``fn`` ((features [B,C,h,w], images [B,3,h,w] or None) -> outputs) over ``tt``,
    run on ``device`` batch by batch (features read from the memory-mapped cache per batch).

    When ``tt`` holds flipped copies (its second half), pose heatmaps are averaged with them. Pose with
    ``coco_dir``: COCO ``keypoints_gt.json`` + ``keypoints_results.json`` are written there and the AP
    is pycocotools' on those files.
    """
    task = tt.task
    flipped = bool(tt.flipped.any())
    n = len(tt) // 2 if flipped else len(tt)
    metric = make_metric(task, coco_dir)
    for start in range(0, n, batch):
        idx = torch.arange(start, min(n, start + batch))
        img = tt.images(idx)
        out = fn(tt.feats[idx].to(device).float(), None if img is None else img.to(device)).float().cpu()
        if flipped and task == "pose":
            out = 0.5 * (out + flip_back(fn(tt.feats[idx + n].to(device).float(), None).float().cpu(), task))
        for j, i in enumerate(idx.tolist()):
            _update(metric, task, out[j], tt.items[i], tt, i, data, cfg)
    return metric.compute()


def _update(metric, task: str, out: torch.Tensor, item: Item, tt: TaskTensors, i: int, data: DenseData,
            cfg: HeadConfig) -> None:
    tgt = data.load_target(item, task)
    if task == "pose":
        xy, score = decode_heatmaps(out.numpy(), cfg.heatmap_stride)
        xy = apply_affine(xy, invert_affine(tt.extra["affine"][i]))
        pred = np.concatenate([xy, score[:, None]], axis=1)
        metric.update(tgt["image_id"], tgt["keypoints"], tgt["bbox"], tgt["area"], pred,
                      float(np.clip(score, 0, None).mean()))
        return
    hw = (tgt["parts"] if task == "seg" else tgt[task]).shape[:2]
    up = F.interpolate(out[None], size=hw, mode="bilinear", align_corners=False)[0]
    if task == "seg":
        metric.update(up.argmax(0).numpy(), tgt["parts"])
        return
    if task == "normal":
        up = F.normalize(up, dim=0, eps=1e-6)
    pred = up.permute(1, 2, 0).numpy()
    if task == "pointmap":
        metric.update(pred, tgt[task], tgt["valid"], tgt.get("keypoints"))
    else:
        metric.update(pred, tgt[task], tgt["valid"])


def evaluate_head(head, cfg: HeadConfig, data: DenseData, items: list[Item], extractor: FeatureExtractor | None,
                  cache: FeatureCache | None = None, device: str | torch.device = "cpu",
                  coco_dir: str | Path | None = None) -> dict:
    """Metrics of a trained head on ``items`` (flip test for pose when ``cfg.flip_test``)."""
    flip = cfg.task == "pose" and cfg.flip_test
    tt = prepare_task(data, items, cfg, extractor, cache, flip=flip, device=device)
    head.to(device).eval()
    out_hw = cfg.out_hw()
    return evaluate_outputs(lambda f, img: head(f, out_hw, img), tt, data, cfg, device=device, coco_dir=coco_dir)


def mean_baseline(train: TaskTensors, cfg: HeadConfig, per_pixel: bool = False) -> OutputFn:
    """The trivial predictor: one output for every input, the mean of the training targets.

    pose: heatmaps at the mean position of each keypoint in the crop. Dense tasks: the mean over all
    labelled training pixels (one class-frequency vector / normal / point / colour for every pixel),
    or with ``per_pixel`` the mean map of each pixel position (a spatial prior; a stronger baseline).
    """
    t, task = train.targets, train.task
    if task == "pose":
        k = t["kpts"]
        lab = (k[..., 2] > 0).float()
        mean_xy = (k[..., :2] * lab[..., None]).sum(0) / lab.sum(0).clamp_min(1)[:, None]
        kp = torch.cat([mean_xy, (lab.sum(0) > 0).float()[:, None] * 2], dim=1)
        const, _ = gaussian_heatmaps(kp[None], cfg.heatmap_hw, cfg.heatmap_stride, cfg.heatmap_sigma)
        const = const[0]
    elif task == "seg":
        freq = F.one_hot(t["parts"].long(), NUM_PARTS).float().mean(0)  # [h,w,C] class frequencies
        if not per_pixel:
            freq = freq.mean((0, 1), keepdim=True).expand_as(freq)
        const = torch.log(freq.permute(2, 0, 1) + 1e-6)
    else:
        v = t["valid"].float()[..., None]
        x = t[task].float()
        glob = (x * v).sum((0, 1, 2)) / v.sum().clamp_min(1)
        if per_pixel:
            cnt = v.sum(0)
            const = torch.where(cnt > 0, (x * v).sum(0) / cnt.clamp_min(1), glob)
        else:
            const = glob.expand(x.shape[1:])
        const = const.permute(2, 0, 1)
        if task == "normal":
            const = F.normalize(const, dim=0, eps=1e-6)
    return lambda f, img=None: const[None].expand(f.shape[0], *const.shape).to(f.device)


def run_eval(checkpoint: str, data_dir: str, out_json: str | None = None, backbone: str | None = None,
             keypoints: str | None = None, cache_dir: str | None = None, split: str = "all",
             device: str = "cpu") -> dict:
    """The ``eval`` command: metrics of a checkpoint on a DATA folder (all images, or its held-out split)."""
    from humans.heads.models.model import load_model

    model = load_model(checkpoint, backbone)
    cfg = model.config
    data = DenseData(data_dir, keypoints)
    keys = data.keys if split == "all" else data.split(cfg.val_frac, cfg.seed)[1 if split == "val" else 0]
    items = data.items(cfg.task, keys)
    if not items:
        raise ValueError(f"{data_dir}: no labelled samples for task {cfg.task!r}")
    coco_dir = None
    if cfg.task == "pose":  # COCO files beside the metrics JSON (or in the working folder without one)
        coco_dir = Path(out_json).parent / f"{Path(out_json).stem}_coco" if out_json else Path("eval_coco")
    metrics = evaluate_head(model.head, cfg, data, items, model.extractor, FeatureCache(cache_dir),
                           device=device, coco_dir=coco_dir)
    result = {"task": cfg.task, "checkpoint": str(checkpoint), "data": str(data_dir), "split": split,
              "samples": len(items), "metrics": metrics}
    if coco_dir is not None:
        result["coco"] = {"ground_truth": str(coco_dir / "keypoints_gt.json"),
                          "results": str(coco_dir / "keypoints_results.json"),
                          "kpt_oks_sigmas": [float(v) for v in SIGMAS],
                          "note": "AP, AP50, AP75 are pycocotools COCOeval('keypoints') on these two files "
                                  "with these per-keypoint sigmas"}
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(result, indent=2))
    return result
