"""Features and labels of one task's samples, prepared once for training and evaluation.

``prepare_task`` loads a task's samples (labels at the output size, compact dtypes; through the task's
spec, ``heads.tasks``) and their backbone features (computed in batches, or read from the feature
cache); flip augmentation adds the mirrored copies (mirrored labels and the mirrored image's
features). Used by ``heads.train`` (fit), ``heads.evaluate`` and ``heads.probe``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData, Item
from humans.heads.data.features import FeatureCache, FeatureExtractor, file_digest, to_tensor
from humans.heads.data.transforms import resize_image, resize_nearest
from humans.heads.tasks import get_task
from humans.shared.log import progress


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


def images_id(data: DenseData, items: list[Item]) -> str:
    """Which image files ``items`` name: the folder and each file's name, size and modification time. Item keys
    alone are not enough: two DATA folders (a training and a held-out set rendered apart) both number their images
    from 000000, and a folder rendered again keeps its names."""
    h = hashlib.sha256(str(data.root.resolve()).encode())
    for key in dict.fromkeys(i.key for i in items):
        st = os.stat(data.image_path(key))
        h.update(f"|{key}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def feature_key(cfg: HeadConfig, items: list[Item], task: str, flip: bool, data: DenseData) -> str:
    view = get_task(task).view
    return FeatureCache.key(backbone=backbone_id(cfg), layers=cfg.layers, size=cfg.size, mean=cfg.pixel_mean,
                            std=cfg.pixel_std, view=view, flip=flip, data=[(i.key, i.person) for i in items],
                            images=images_id(data, items))


_MEMORY: dict[str, torch.Tensor] = {}  # memory-mapped features opened in this process (probe reuses them)


@torch.no_grad()
def prepare_task(data: DenseData, items: list[Item], cfg: HeadConfig, extractor: FeatureExtractor | None,
                 cache: FeatureCache | None = None, flip: bool = False, batch_size: int = 16,
                 device: str | torch.device = "cpu") -> TaskTensors:
    """Labels and features of ``items`` (and, with ``flip``, of their mirrored copies).

    Features are written to the cache (``cache``, or a temporary folder) one batch at a time as they
    are computed and come back memory-mapped: only the rows a training step indexes are read."""
    task = cfg.task
    spec = get_task(task)
    variants = [False, True] if flip else [False]
    key = feature_key(cfg, items, task, flip, data)
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
            if not spec.dense:  # the input image is kept only as the dense heads' skip input
                s.pop("image")
            flags.append(fl)
            s.pop("orig_hw", None)
            if spec.dense and label_hw != tuple(cfg.size):
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
