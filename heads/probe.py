"""Linear probing: one linear layer per task on frozen features of each backbone, one table.

For every backbone and task, features of the training and held-out images are computed once (cached
in memory across tasks: the dense tasks share whole-image features, pose uses person crops; and on
disk with ``cache_dir``), a ``LinearProbe`` (1x1 linear layer + bilinear upsampling) is trained on them
and evaluated. The table has one row per metric and one column per backbone, plus the mean-prediction
baseline; arrows tell whether higher or lower is better.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData
from humans.heads.data.features import FeatureCache, FeatureExtractor
from humans.heads.evaluate import evaluate_head, evaluate_outputs, mean_baseline
from humans.heads.models.model import make_head
from humans.heads.train import fit, prepare_task
from humans.shared.log import get_logger

log = get_logger("heads.probe")

# (task, metric key, label, higher is better)
ROWS = [("pose", "AP", "pose OKS AP", True), ("pose", "PCK@0.1", "pose PCK@0.1", True),
        ("seg", "mIoU", "seg mIoU", True), ("seg", "pixel_acc", "seg pixel acc.", True),
        ("pointmap", "si_error", "pointmap scale-inv. error", False),
        ("pointmap", "kpt_error", "pointmap error at keypoints", False),
        ("normal", "mean_deg", "normal mean angle (deg)", False),
        ("normal", "median_deg", "normal median angle (deg)", False),
        ("normal", "<11.25", "normal % < 11.25 deg", True), ("normal", "<30", "normal % < 30 deg", True),
        ("albedo", "MAE", "albedo MAE", False), ("albedo", "PSNR", "albedo PSNR (dB)", True)]


def parse_backbones(specs: list[str]) -> list[tuple[str, str]]:
    """``["random=a.safetensors", "b.safetensors"]`` -> [(label, path)] (label defaults to the file stem)."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = Path(spec).stem, spec
        if not label or not path:
            raise ValueError(f"--backbone {spec!r}: expected LABEL=PATH or PATH")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--backbone {spec!r}: file {path} not found")
        if label in [lab for lab, _ in out]:
            raise ValueError(f"--backbone {spec!r}: label {label!r} used twice")
        out.append((label, path))
    return out


def format_table(results: dict[str, dict[str, dict]], tasks: list[str]) -> str:
    """Markdown table: rows = metrics of the chosen tasks, columns = backbones (and baseline)."""
    cols = list(results)
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for task, key, label, higher in ROWS:
        if task not in tasks:
            continue
        vals = [results[c].get(task, {}).get(key) for c in cols]
        cells = []
        finite = [v for v in vals if v is not None and v == v]
        best = (max(finite) if higher else min(finite)) if finite else None
        for v in vals:
            if v is None or v != v:
                cells.append("n/a")
            else:
                s = f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
                unique_best = v == best and len(finite) > 1 and len(set(finite)) > 1
                cells.append(f"**{s}**" if unique_best else s)
        lines.append(f"| {label} {'↑' if higher else '↓'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_probe(backbones: list[tuple[str, str]], data_dir: str, tasks: list[str], layers: list[int],
              size: tuple[int, int], epochs: int = 30, batch_size: int = 16, lr: float = 1e-2,
              val_frac: float = 0.25, val_data: str | None = None, label_stride: int = 4, seed: int = 0,
              baseline: bool = True,
              cache_dir: str | None = None, write_results: str | None = None, device: str = "cpu") -> dict:
    """Probe every backbone on every task; returns ``{"results", "seconds", "table", ...}``."""
    from humans.shared.backbone import load_backbone

    torch.manual_seed(seed)
    data = DenseData(data_dir)
    if val_data:
        val_set = DenseData(val_data)
        train_keys, val_keys = data.keys, val_set.keys
    else:
        val_set = data
        train_keys, val_keys = data.split(val_frac, seed)
    cache = FeatureCache(cache_dir)
    results: dict[str, dict[str, dict]] = {}
    seconds: dict[str, float] = {}
    base: dict[str, dict] = {}
    counts: dict[str, tuple[int, int]] = {}
    for label, path in backbones:
        t0 = time.time()
        backbone = load_backbone(path)
        results[label] = {}
        for task in tasks:
            cfg = HeadConfig(task=task, kind="linear", backbone=str(Path(path).resolve()), layers=layers, size=size,
                             epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, flip_aug=False,
                             flip_test=False, val_frac=val_frac, seed=seed, label_stride=label_stride)
            tr_items, va_items = data.items(task, train_keys), val_set.items(task, val_keys)
            if not tr_items or not va_items:
                log.warning("%s: no labelled %s samples (train %d, held-out %d): skipped", label, task,
                            len(tr_items), len(va_items))
                continue
            counts[task] = (len(tr_items), len(va_items))
            extractor = FeatureExtractor(backbone, layers, cfg.pixel_mean, cfg.pixel_std)
            tt = prepare_task(data, tr_items, cfg, extractor, cache, device=device)
            torch.manual_seed(seed)
            head = make_head(cfg, backbone)
            hist = fit(head, tt, cfg, desc=f"{label}/{task}: probe", device=device)
            results[label][task] = evaluate_head(head, cfg, val_set, va_items, extractor, cache, device=device)
            log.info("%s/%s: loss %.4f -> %.4f; %s", label, task, hist[0], hist[-1],
                     {k: round(v, 4) for k, v in results[label][task].items() if "/" not in k})
            if baseline and task not in base:
                vt = prepare_task(val_set, va_items, cfg, extractor, cache, device=device)
                base[task] = evaluate_outputs(mean_baseline(tt, cfg), vt, val_set, cfg, device=device)
        seconds[label] = round(time.time() - t0, 1)
    if baseline:
        results["mean baseline"] = base
    table = format_table(results, tasks)
    out = {"results": results, "seconds": seconds, "samples": counts, "table": table, "layers": layers,
           "size": list(size), "epochs": epochs}
    if write_results:
        write_markdown(write_results, out, backbones, data_dir)
    return out


def write_markdown(path: str, res: dict, backbones: list[tuple[str, str]], data_dir: str) -> None:
    ns = ", ".join(f"{t} {a}/{b}" for t, (a, b) in res["samples"].items())
    text = [
        "# Linear probes on frozen backbones", "",
        f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU. Data: `{data_dir}` "
        f"(train/held-out samples: {ns}). Input {res['size'][0]}x{res['size'][1]}, layers {res['layers']}, "
        f"{res['epochs']} epochs of one 1x1 linear layer per task (bilinear upsampling, no decoder).", "",
        "Backbones: " + ", ".join(f"{lab} = `{p}`" for lab, p in backbones) + ".", "",
        res["table"], "",
        "Seconds per backbone (features + five probes + evaluation): "
        + ", ".join(f"{k} {v}" for k, v in res["seconds"].items()) + ".", "",
    ]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    tmp.write_text("\n".join(text))
    os.replace(tmp, p)
