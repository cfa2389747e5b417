"""Training of a head on frozen backbone features.

``fit`` trains a head on the tensors ``heads.prepare.prepare_task`` made (features and labels of a
task's samples) with AdamW and a cosine schedule; no backbone forward happens during training. ``run_train``
is the ``train`` command: split, prepare, fit, evaluate on the held-out split, write
``RUN/head.safetensors``, ``RUN/metrics.json`` (the head's held-out metrics beside those of the mean
prediction) and ``RUN/history.json``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData
from humans.heads.data.features import FeatureCache, FeatureExtractor
from humans.heads.evaluate import evaluate_head, evaluate_outputs, mean_baseline, prepare_eval
from humans.heads.models.model import load_backbone_for, make_head, save_head
from humans.heads.prepare import TaskTensors, prepare_task
from humans.heads.tasks import get_task
from humans.shared.atomic import atomic_write_json
from humans.shared.log import get_logger, progress
from humans.shared.runlog import plot_curves, tensorboard_writer

log = get_logger("heads.train")

__all__ = ["TaskTensors", "batch_targets", "fit", "prepare_task", "run_train"]  # prepare_task: heads.prepare


def batch_targets(tt: TaskTensors, idx: torch.Tensor, cfg: HeadConfig) -> dict[str, torch.Tensor]:
    """The loss inputs for samples ``idx`` (``TaskSpec.batch_targets``; pose renders heatmaps here
    from the stored keypoints)."""
    return get_task(tt.task).batch_targets(tt.targets, idx, cfg)


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
    # channels-last convolutions: 1.3-1.5x faster steps for the dense heads on CPU (oneDNN), measured in
    # benchmarks/results/main_job.md; same numbers up to float rounding
    head.to(device=device, memory_format=torch.channels_last)
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
    spec = get_task(tt.task)
    out_hw = cfg.out_hw()
    head.train()
    history = []
    for _ in progress(range(epochs), desc=desc or f"{tt.task}: train", total=epochs, unit="epoch"):
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * bs:(s + 1) * bs]
            feats = _to(tt.feats[idx], device).float().contiguous(memory_format=torch.channels_last)
            pred = head(feats, out_hw, _to(tt.images(idx), device))
            loss = spec.loss(pred, _to(batch_targets(tt, idx, cfg), device), cfg.loss)
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


def mean_baseline_metrics(tt: TaskTensors, vt: TaskTensors, cfg: HeadConfig, val_set: DenseData, device) -> dict:
    """The held-out metrics (on ``vt``, from ``prepare_eval``) of the mean prediction of the training
    tensors ``tt`` (pose: each keypoint at its mean crop position; dense tasks: the per-pixel mean map
    of the training targets) through the same evaluation as the head: the figure a head's metrics are
    read against."""
    return evaluate_outputs(mean_baseline(tt, cfg, per_pixel=True), vt, val_set, cfg, device=device)


def run_train(cfg: HeadConfig, data_dir: str, out_dir: str, val_data: str | None = None,
              keypoints: str | None = None, cache_dir: str | None = None, threads: int | None = None,
              device: str = "cpu", max_images: int | None = None) -> dict:
    """The ``train`` command (see module docstring); returns the held-out metrics. ``max_images``: train on the
    first that many training images (by name) only."""
    if max_images is not None and max_images < 1:
        raise ValueError(f"--max-images {max_images}: allowed >= 1")
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
    train_keys = train_keys[:max_images] if max_images else train_keys
    train_items = data.items(cfg.task, train_keys)
    val_items = val_set.items(cfg.task, val_keys)
    log.info("%s: %d training and %d held-out samples; backbone %s layers %s; input %dx%d",
             cfg.task, len(train_items), len(val_items), cfg.backbone, cfg.layers, *cfg.size)
    cache = FeatureCache(cache_dir)
    tt = prepare_task(data, train_items, cfg, extractor, cache, flip=cfg.flip_aug, device=device)
    head = make_head(cfg, backbone)
    prior = get_task(cfg.task).prior(tt.targets, cfg) if cfg.mean_prior and cfg.kind == "head" else None
    if prior is not None:
        head.set_prior(prior)
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
    metrics, baseline = {}, {}
    if val_items:  # the held-out split prepared once, for the head and for the mean baseline
        vt = prepare_eval(val_set, val_items, cfg, extractor, cache, device)
        metrics = evaluate_head(head, cfg, val_set, val_items, extractor, cache, device=device, tt=vt)
        baseline = mean_baseline_metrics(tt, vt, cfg, val_set, device)
    if tb is not None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and "/" not in k:
                tb.add_scalar(f"heads/{cfg.task}/val_{k}", float(v), len(history))
        tb.close()
    plot_curves(rows, out / "plots" / "loss.png", {"training loss": ("loss",), "learning rate": ("lr",)},
                x="epoch", title=f"{cfg.task} ({cfg.kind}) on {Path(cfg.backbone or '').name}", log_y=("training loss",))
    result = {"task": cfg.task, "kind": cfg.kind, "train_samples": len(train_items), "val_samples": len(val_items),
              "metrics": metrics, "mean_baseline": baseline, "seconds": round(time.time() - t0, 1)}
    atomic_write_json(out / "metrics.json", result, sort_keys=False, default=float)
    atomic_write_json(out / "history.json", {"loss": history}, sort_keys=False, default=float)
    return result
