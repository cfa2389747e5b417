"""Linear probing: one linear map per task on frozen features of each backbone, solved to convergence.

For every backbone and task, features of the training and held-out images are computed once (the
dense tasks share whole-image features, pose uses person crops; cached on disk with ``cache_dir``)
from several evenly spaced depths of the backbone, concatenated. ``heads.probe_solver`` fits one
linear map per task in closed form (ridge, regularisation chosen on a held-out part of the training
images; segmentation: softmax regression by L-BFGS), reporting the fit's train and held-out loss.
No skip connection, no decoder, no image input: only the backbone's tokens. The table has one row per
metric and one column per backbone, plus the mean-prediction baseline (the same probe without features: the per-position mean of the
training targets, so a backbone scores above it only with information its features add); arrows
tell whether higher or lower is better.
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
from humans.heads.data.transforms import gaussian_heatmaps
from humans.heads.evaluate import evaluate_outputs
from humans.heads.losses import pointmap_scale
from humans.heads.probe_solver import (LinearMap, fit_ridge, fit_softmax, shuffle_factor, targets_to_token_rows,
                                       to_token_rows)
from humans.heads.prepare import TaskTensors, prepare_task
from humans.heads.tasks import TASKS, get_task
from humans.shared.humans.parts import NUM_PARTS
from humans.shared.atomic import atomic_write_text
from humans.shared.log import get_logger

log = get_logger("heads.probe")

# the one metric per task that ranks backbones (and whether higher is better)
PRIMARY = {"pose": ("PCK@0.1", True), "seg": ("mIoU", True), "normal": ("mean_deg", False),
           "pointmap": ("si_error", False), "albedo": ("MAE", False)}


def table_rows(tasks: list[str]) -> list[tuple[str, str, str, bool]]:
    """(task, metric key, label, higher is better) of the chosen tasks, in the registry's task order,
    from each task spec's ``metric_rows``."""
    return [(t, *row) for t in TASKS if t in tasks for row in get_task(t).metric_rows]


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
    for task, key, label, higher in table_rows(tasks):
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


def _no_features(feats: torch.Tensor) -> torch.Tensor:
    """The constant (zero) features the mean-prediction baseline was fitted on, on ``feats``' grid."""
    return torch.zeros(feats.shape[0], 1, *feats.shape[-2:])


def even_layers(depth: int, count: int = 4) -> list[int]:
    """``count`` evenly spaced block indices ending at the last block (fewer when the backbone is shallow)."""
    count = max(1, min(count, depth))
    return sorted({round((i + 1) * depth / count) - 1 for i in range(count)})


def resolve_layers(spec: list[int] | str, depth: int) -> list[int]:
    """``"auto"`` -> ``even_layers(depth)``; a list is used as given."""
    return even_layers(depth) if spec == "auto" else list(spec)


def fit_task(tt: TaskTensors, cfg: HeadConfig, seed: int = 0, use_features: bool = True) -> LinearMap:
    """The linear probe of ``cfg.task`` on ``tt`` (features [N, D, h, w] and labels). Without
    ``use_features`` the same probe sees constant features: it fits only its per-position intercept,
    i.e. the per-position mean of the training targets (seg: log class frequencies), the mean-prediction
    baseline that every backbone has to beat."""
    n, _, h, w = tt.feats.shape
    x = to_token_rows(tt.feats if use_features else _no_features(tt.feats))
    t = tt.targets
    if cfg.task == "pose":
        hm, _ = gaussian_heatmaps(t["kpts"], cfg.heatmap_hw, cfg.heatmap_stride, cfg.heatmap_sigma)
        r = shuffle_factor((h, w), cfg.heatmap_hw)
        lmap = fit_ridge(x, targets_to_token_rows(hm, (h, w), r, "area"), r, h * w, seed=seed)
    else:
        r = shuffle_factor((h, w), cfg.out_hw())
        if cfg.task == "seg":
            labels = targets_to_token_rows(t["parts"][:, None], (h, w), r, "nearest").long()
            lmap = fit_softmax(x, labels, NUM_PARTS, r, h * w, seed=seed)
        else:
            valid = targets_to_token_rows(t["valid"][:, None].float(), (h, w), r, "nearest")
            y = t[cfg.task].float().permute(0, 3, 1, 2) * t["valid"][:, None].float()
            if cfg.task == "pointmap":  # the metric is scale-invariant: fit each image's shape, not its scale
                # (fitted on raw points, the ridge probe spent its fit on each person's distance and scored
                # worse than the mean map even on features holding the exact shape: test_probe_solver.py)
                y = y / pointmap_scale(y, t["valid"])[:, None, None, None]
            lmap = fit_ridge(x, targets_to_token_rows(y, (h, w), r, "nearest"), r, h * w, valid=valid, seed=seed)
    lmap.report.update(input_size=list(cfg.size), token_grid=[h, w])
    return lmap


def run_probe(backbones: list[tuple[str, str]], data_dir: str, tasks: list[str], layers: list[int] | str,
              size: tuple[int, int], val_frac: float = 0.25, val_data: str | None = None, label_stride: int = 4,
              seed: int = 0, baseline: bool = True, cache_dir: str | None = None,
              write_results: str | None = None, device: str = "cpu",
              pose_size: tuple[int, int] | None = None) -> dict:
    """Probe every backbone on every task; returns ``{"results", "fits", "seconds", "table", ...}``.

    ``size`` is the input of the whole-image (dense) tasks; ``pose_size`` that of the pose probe's person
    crops (default ``size``). A person crop fills its input, so at the dense tasks' size a person is
    shown several times larger than in the pretraining views; ``pose_size`` at the pretraining view
    size shows people at the scale the backbone learned from (the heatmaps keep their stride, 4 input
    pixels, and sigma, 2 cells, so relative to the person they are coarser at a smaller input)."""
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
    fits: dict[str, dict[str, dict]] = {}
    seconds: dict[str, float] = {}
    base: dict[str, dict] = {}
    counts: dict[str, tuple[int, int]] = {}
    used_layers: dict[str, list[int]] = {}
    for label, path in backbones:
        t0 = time.time()
        backbone = load_backbone(path)
        chosen = resolve_layers(layers, int(backbone.num_layers))
        used_layers[label] = chosen
        extractor = FeatureExtractor(backbone, chosen)
        results[label], fits[label] = {}, {}
        for task in tasks:
            task_size = pose_size if (task == "pose" and pose_size) else size
            cfg = HeadConfig(task=task, kind="linear", backbone=str(Path(path).resolve()), layers=chosen, size=task_size,
                             flip_aug=False, flip_test=False, val_frac=val_frac, seed=seed,
                             label_stride=label_stride)
            tr_items, va_items = data.items(task, train_keys), val_set.items(task, val_keys)
            if not tr_items or not va_items:
                log.warning("%s: no labelled %s samples (train %d, held-out %d): skipped", label, task,
                            len(tr_items), len(va_items))
                continue
            counts[task] = (len(tr_items), len(va_items))
            tt = prepare_task(data, tr_items, cfg, extractor, cache, device=device)
            lmap = fit_task(tt, cfg, seed)
            vt = prepare_task(val_set, va_items, cfg, extractor, cache, device=device)
            out_hw = cfg.out_hw()
            results[label][task] = evaluate_outputs(lambda f, img: lmap(f.cpu(), out_hw), vt, val_set, cfg)
            fits[label][task] = lmap.report
            log.info("%s/%s: %s lambda %g, train loss %.4g, held-out loss %.4g; %s", label, task,
                     lmap.report["solver"], lmap.report["lambda"], lmap.report["train_loss"],
                     lmap.report["heldout_loss"],
                     {k: round(v, 4) for k, v in results[label][task].items() if "/" not in k})
            if baseline and task not in base:
                bmap = fit_task(tt, cfg, seed, use_features=False)
                base[task] = evaluate_outputs(lambda f, img: bmap(_no_features(f), out_hw), vt, val_set, cfg)
        seconds[label] = round(time.time() - t0, 1)
    if baseline:
        results["mean baseline"] = base
    table = format_table(results, tasks)
    out = {"results": results, "fits": fits, "seconds": seconds, "samples": counts, "table": table,
           "layers": used_layers, "size": list(size), "pose_size": list(pose_size or size),
           "label_stride": label_stride}
    if write_results:
        write_markdown(write_results, out, backbones, data_dir)
    return out


def merge_probe_runs(parts: list[dict], tasks: list[str], order: list[str] | None = None) -> dict:
    """One probe result from the JSON results of several ``run_probe`` calls on disjoint backbones of the
    same data, size and seed (backbones probed side by side in separate processes): backbones in
    ``order`` (default: the parts' order), the mean baseline (from whichever part computed it) last, the
    table rebuilt. Refuses parts of different inputs or with a backbone twice."""
    if not parts:
        raise ValueError("merge_probe_runs: no parts")
    same = ("samples", "size", "pose_size", "label_stride")
    for part in parts[1:]:
        for key in same:
            if part.get(key) != parts[0].get(key):
                raise ValueError(f"merge_probe_runs: parts differ in {key!r} ({parts[0].get(key)} vs "
                                 f"{part.get(key)}): probe every backbone on the same data and sizes")
    merged: dict = {"results": {}, "fits": {}, "seconds": {}, "layers": {}}
    baseline = None
    for part in parts:
        for label, res in part["results"].items():
            if label == "mean baseline":
                baseline = baseline or res
                continue
            if label in merged["results"]:
                raise ValueError(f"merge_probe_runs: backbone {label!r} in two parts")
            merged["results"][label] = res
        for key in ("fits", "seconds", "layers"):
            merged[key].update(part.get(key, {}))
    if order is not None:
        missing = sorted(set(merged["results"]) - set(order))
        if missing:
            raise ValueError(f"merge_probe_runs: backbones {missing} not in order {order}")
        merged["results"] = {label: merged["results"][label] for label in order if label in merged["results"]}
    if baseline is not None:
        merged["results"]["mean baseline"] = baseline
    merged.update({key: parts[0][key] for key in same})
    merged["table"] = format_table(merged["results"], tasks)
    return merged


def write_markdown(path: str, res: dict, backbones: list[tuple[str, str]], data_dir: str) -> None:
    ns = ", ".join(f"{t} {a}/{b}" for t, (a, b) in res["samples"].items())
    text = [
        "# Linear probes on frozen backbones", "",
        f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU. Data: `{data_dir}` "
        f"(train/held-out samples: {ns}). Input {res['size'][0]}x{res['size'][1]} (pose person crops "
        f"{res['pose_size'][0]}x{res['pose_size'][1]}); features of blocks "
        f"{res['layers']} concatenated; one linear map per token and task (pixel-shuffled to labels at 1/"
        f"{res['label_stride']} of the input), solved to convergence: ridge in closed form (pose heatmaps, "
        "pointmap, normals, albedo) or softmax regression by preconditioned L-BFGS, its bias fixed at each "
        "position's class frequencies (segmentation), regularisation chosen on "
        "a held-out fifth of the training images. No skip connection, no decoder.", "",
        "Backbones: " + ", ".join(f"{lab} = `{p}`" for lab, p in backbones) + ".", "",
        res["table"], "",
        "Seconds per backbone (features + five probes + evaluation): "
        + ", ".join(f"{k} {v}" for k, v in res["seconds"].items()) + ".", "",
    ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(text))
