"""Training of a head on frozen backbone features.

``prepare_task`` loads a task's samples once (labels at the input size, compact dtypes) and their
backbone features (computed in batches, or read from the feature cache); flip augmentation adds the
mirrored copies (mirrored labels and the mirrored image's features). ``fit`` trains a head on those
tensors with AdamW and a cosine schedule; no backbone forward happens during training. ``run_train``
is the ``train`` command: split, prepare, fit, evaluate on the held-out split, write
``RUN/head.safetensors``, ``RUN/metrics.json`` and ``RUN/history.json``.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData, Item
from humans.heads.data.features import FeatureCache, FeatureExtractor, file_digest, to_tensor
from humans.heads.data.transforms import gaussian_heatmaps, resize_image, resize_nearest
from humans.heads.losses import LossWeights, task_loss
from humans.shared.log import get_logger, progress
from humans.shared.runlog import plot_curves, tensorboard_writer

log = get_logger("heads.train")


@dataclass
class TaskTensors:
    """Features and input-size labels of one task's samples (flipped copies appended when asked)."""

    task: str
    items: list[Item]
    feats: torch.Tensor                      # [N, C, h, w] float16
    targets: dict[str, torch.Tensor]         # pose: kpts [N,K,3]; seg: parts [N,h,w] uint8; dense:
    flipped: torch.Tensor                    # <task> [N,h,w,3] float16, valid [N,h,w] bool; image [N,h,w,3]
    extra: dict = field(default_factory=dict)  # pose: affine [N,2,3] (original -> input)

    def __len__(self) -> int:
        return self.feats.shape[0]

    def images(self, idx: torch.Tensor) -> torch.Tensor | None:
        """[B,3,h,w] float [0, 1] input images at the output size (dense tasks), else None."""
        img = self.targets.get("image")
        return None if img is None else img[idx].permute(0, 3, 1, 2).float().div(255.0)


def backbone_id(cfg: HeadConfig) -> str:
    if cfg.backbone and Path(cfg.backbone).is_file():
        return file_digest(cfg.backbone)
    return json.dumps(cfg.backbone_config)


def feature_key(cfg: HeadConfig, items: list[Item], task: str, flip: bool) -> str:
    view = "crop" if task == "pose" else "whole"
    return FeatureCache.key(backbone=backbone_id(cfg), layers=cfg.layers, size=cfg.size, mean=cfg.pixel_mean,
                            std=cfg.pixel_std, view=view, flip=flip, data=[(i.key, i.person) for i in items])


_MEMORY: dict[str, torch.Tensor] = {}  # memory-mapped features opened in this process (probe reuses them)


@torch.no_grad()
def prepare_task(data: DenseData, items: list[Item], cfg: HeadConfig, extractor: FeatureExtractor | None,
                 cache: FeatureCache | None = None, flip: bool = False, batch_size: int = 16,
                 device: str | torch.device = "cpu") -> TaskTensors:
    """Labels and features of ``items`` (and, with ``flip``, of their mirrored copies).

    Features are written to the cache (``cache``, or a temporary folder) one batch at a time as they
    are computed and come back memory-mapped: only the rows a training step indexes are read."""
    task = cfg.task
    variants = [False, True] if flip else [False]
    key = feature_key(cfg, items, task, flip)
    store = cache if cache is not None else FeatureCache(None)
    cached = _MEMORY.get(key)
    if cached is None:
        cached = store.open(key)
    labels: dict[str, list] = {}
    batch: list[np.ndarray] = []
    flags: list[bool] = []
    units = [(it, fl) for fl in variants for it in items]
    writer = store.writer(key, len(units)) if cached is None and units else None
    if writer is not None:
        if extractor is None:
            raise ValueError("no cached features and no backbone to compute them")
        extractor.eval().to(device)

    def flush():
        if batch and writer is not None:
            writer.write(extractor(to_tensor(batch).to(device)).half().cpu())
        batch.clear()

    label_hw = cfg.out_hw()
    try:
        for it, fl in progress(units, desc=f"{task}: samples", total=len(units), unit="img"):
            s = data.load(it, task, tuple(cfg.size), flip=fl)
            batch.append(s["image"])
            if task == "pose":
                s.pop("image")
            flags.append(fl)
            s.pop("orig_hw", None)
            if task != "pose" and label_hw != tuple(cfg.size):
                s = {k: (resize_image(v, label_hw) if k == "image" else resize_nearest(v, label_hw))
                     if isinstance(v, np.ndarray) and v.ndim >= 2 else v for k, v in s.items()}
            for k, v in s.items():
                labels.setdefault(k, []).append(v)
            if len(batch) >= batch_size:
                flush()
        flush()
        if writer is not None:
            writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if cached is None:
        cached = store.open(key) if units else torch.zeros(0)
    f = cached
    _MEMORY[key] = f
    targets: dict[str, torch.Tensor] = {}
    extra: dict = {}
    for k, vals in labels.items():
        arr = np.stack(vals)
        if k == "affine":
            extra[k] = arr
        elif k == "image":
            targets[k] = torch.from_numpy(arr)  # [N,h,w,3] uint8 at the output size (skip connection)
        elif k == "parts":
            targets[k] = torch.from_numpy(arr.astype(np.uint8))
        elif k == "valid":
            targets[k] = torch.from_numpy(arr.astype(bool))
        elif k == "kpts":
            targets[k] = torch.from_numpy(arr.astype(np.float32))
        else:
            targets[k] = torch.from_numpy(arr.astype(np.float16))
    return TaskTensors(task, list(items) * len(variants), f, targets, torch.tensor(flags), extra)


def batch_targets(tt: TaskTensors, idx: torch.Tensor, cfg: HeadConfig) -> dict[str, torch.Tensor]:
    """The loss inputs for samples ``idx`` (heatmaps are rendered here from stored keypoints)."""
    t = tt.targets
    if tt.task == "pose":
        hm, w = gaussian_heatmaps(t["kpts"][idx], cfg.heatmap_hw, cfg.heatmap_stride, cfg.heatmap_sigma)
        return {"heatmaps": hm, "kpt_weight": w}
    if tt.task == "seg":
        return {"parts": t["parts"][idx].long()}
    return {tt.task: t[tt.task][idx].float().permute(0, 3, 1, 2), "valid": t["valid"][idx][:, None]}


def loss_weights(cfg: HeadConfig) -> LossWeights:
    return LossWeights(**cfg.loss.model_dump())


def _to(x, device):
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x


def fit(head: nn.Module, tt: TaskTensors, cfg: HeadConfig, epochs: int | None = None,
        desc: str | None = None, device: str | torch.device = "cpu",
        on_epoch: Callable[[int, float, float], None] | None = None) -> list[float]:
    """Train ``head`` on ``device`` from the cached features (each step reads its batch's rows
    from the memory-mapped cache); returns the mean loss of each epoch. ``on_epoch(epoch, loss,
    lr)`` is called after each epoch (epoch counted from 1, lr at its last step)."""
    epochs = epochs or cfg.epochs
    head.to(device)
    n = len(tt)
    if n == 0:
        raise ValueError(f"{tt.task}: no labelled training samples")
    g = torch.Generator().manual_seed(cfg.seed)
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // bs)  # drop the last partial batch (batch norm needs > 1 sample)
    total = epochs * steps_per_epoch
    warm = min(max(1, total // 20), 50)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm
        else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    w = loss_weights(cfg)
    out_hw = cfg.out_hw()
    head.train()
    history = []
    for _ in progress(range(epochs), desc=desc or f"{tt.task}: train", total=epochs, unit="epoch"):
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * bs:(s + 1) * bs]
            pred = head(_to(tt.feats[idx], device).float(), out_hw, _to(tt.images(idx), device))
            loss = task_loss(tt.task, pred, _to(batch_targets(tt, idx, cfg), device), w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
        history.append(tot / steps_per_epoch)
        if on_epoch is not None:
            on_epoch(len(history), history[-1], opt.param_groups[0]["lr"])
    head.eval()
    return history


def run_train(cfg: HeadConfig, data_dir: str, out_dir: str, val_data: str | None = None,
              keypoints: str | None = None, cache_dir: str | None = None, threads: int | None = None,
              device: str = "cpu") -> dict:
    """The ``train`` command (see module docstring); returns the held-out metrics."""
    from humans.heads.evaluate import evaluate_head
    from humans.heads.models.model import load_backbone_for, make_head, save_head

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    backbone = load_backbone_for(cfg)
    cfg.backbone_config = json.loads(backbone.config.model_dump_json())
    extractor = FeatureExtractor(backbone, cfg.layers, cfg.pixel_mean, cfg.pixel_std)
    data = DenseData(data_dir, keypoints)
    if val_data:
        train_keys, val_set = data.keys, DenseData(val_data, keypoints if keypoints else None)
        val_keys = val_set.keys
    else:
        train_keys, val_keys = data.split(cfg.val_frac, cfg.seed)
        val_set = data
    train_items = data.items(cfg.task, train_keys)
    val_items = val_set.items(cfg.task, val_keys)
    log.info("%s: %d training and %d held-out samples; backbone %s layers %s; input %dx%d",
             cfg.task, len(train_items), len(val_items), cfg.backbone, cfg.layers, *cfg.size)
    cache = FeatureCache(cache_dir)
    tt = prepare_task(data, train_items, cfg, extractor, cache, flip=cfg.flip_aug, device=device)
    head = make_head(cfg, backbone)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tb = tensorboard_writer(out)
    rows: list[dict] = []

    def on_epoch(epoch: int, loss: float, lr: float) -> None:
        rows.append({"epoch": epoch, "loss": loss, "lr": lr})
        if tb is not None:
            tb.add_scalar(f"heads/{cfg.task}/train_loss", loss, epoch)
            tb.add_scalar(f"heads/{cfg.task}/lr", lr, epoch)

    history = fit(head, tt, cfg, device=device, on_epoch=on_epoch)
    save_head(out / "head.safetensors", head.cpu(), cfg)
    metrics = (evaluate_head(head, cfg, val_set, val_items, extractor, cache, device=device)
               if val_items else {})
    if tb is not None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and "/" not in k:
                tb.add_scalar(f"heads/{cfg.task}/val_{k}", float(v), len(history))
        tb.close()
    plot_curves(rows, out / "plots" / "loss.png", {"training loss": ("loss",), "learning rate": ("lr",)},
                x="epoch", title=f"{cfg.task} ({cfg.kind}) on {Path(cfg.backbone or '').name}", log_y=("training loss",))
    result = {"task": cfg.task, "kind": cfg.kind, "train_samples": len(train_items), "val_samples": len(val_items),
              "metrics": metrics, "seconds": round(time.time() - t0, 1)}
    _write_json(out / "metrics.json", result)
    _write_json(out / "history.json", {"loss": history})
    return result


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    os.replace(tmp, path)
