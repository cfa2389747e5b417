"""Evaluation metrics of the five tasks, as accumulators (``update`` per batch, ``compute`` at the end).

- pose: OKS-based AP / AP50 / AP75 with pycocotools' COCOeval and our 308 per-keypoint sigmas, and
  PCK@alpha (distance under alpha times the longest side of the person box);
- seg: per-class IoU from a confusion matrix and mIoU (mean over classes present in target or
  prediction); boundary F1, how well the predicted part edges fall on the true ones (sharpness);
- pointmap: scale-invariant error (mean Euclidean error after the least-squares scale that best aligns
  prediction to target, per image) and the same error at visible keypoints;
- normal: mean and median angular error (degrees) and the percentage of pixels under 11.25, 22.5 and
  30 degrees; the gradient ratio, how much the prediction changes between neighbouring pixels against the
  truth (root mean square; below 1: smoother than the truth);
- albedo: mean absolute error and PSNR (values in [0, 1]; PSNR averaged over images).

All accumulators take numpy arrays at the evaluation resolution; masks select the labelled pixels.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from humans.shared.atomic import atomic_write_json
from humans.shared.humans.keypoints import BODY, FACE, HANDS, NUM_KEYPOINTS

# ----------------------------------------------------------------------------------------- pose


def coco_keypoint_gt(gt: Sequence[dict], k: int) -> dict:
    """A COCO keypoint ground-truth dataset (``images``, ``annotations``, ``categories``) of ``gt``.

    ``gt``: one dict per person with ``image_id``, ``keypoints`` ([K,3] x, y, v), ``bbox`` [x, y, w, h]
    and ``area``. The person category lists the K keypoint names and the skeleton (1-based, as COCO).
    """
    from humans.shared.humans.keypoints import KEYPOINT_NAMES, SKELETON

    anns = []
    for i, g in enumerate(gt):
        kp = np.asarray(g["keypoints"], dtype=np.float64).reshape(-1, 3)
        if kp.shape[0] != k:
            raise ValueError(f"ground truth {i} has {kp.shape[0]} keypoints, sigmas have {k}")
        vis = kp[:, 2] > 0
        anns.append({"id": i + 1, "image_id": int(g["image_id"]), "category_id": 1, "iscrowd": 0,
                     "keypoints": kp.ravel().tolist(), "num_keypoints": int(vis.sum()),
                     "bbox": [float(v) for v in g["bbox"]], "area": float(g["area"])})
    category = {"id": 1, "name": "person", "supercategory": "person"}
    if k == len(KEYPOINT_NAMES):
        category.update(keypoints=list(KEYPOINT_NAMES), skeleton=[[a + 1, b + 1] for a, b in SKELETON])
    return {"images": [{"id": i} for i in sorted({int(g["image_id"]) for g in gt})], "annotations": anns,
            "categories": [category]}


def coco_keypoint_results(dt: Sequence[dict]) -> list[dict]:
    """COCO keypoint results (what ``COCO.loadRes`` reads): ``image_id``, ``category_id`` 1,
    ``keypoints`` (x1, y1, s1, x2, ... flat, K x 3) and ``score`` per person."""
    return [{"image_id": int(d["image_id"]), "category_id": 1, "score": float(d["score"]),
             "keypoints": [round(float(v), 3) for v in np.asarray(d["keypoints"], dtype=np.float64).ravel()]}
            for d in dt]


def oks_ap(gt: Sequence[dict], dt: Sequence[dict], sigmas: np.ndarray,
           coco_dir: str | Path | None = None) -> dict[str, float]:
    """COCO keypoint AP with per-keypoint ``sigmas``.

    ``gt``: see :func:`coco_keypoint_gt`; ``dt``: dicts with ``image_id``, ``keypoints`` ([K,3] x, y,
    score) and ``score``. With ``coco_dir``, the ground truth and the results are written there as
    ``keypoints_gt.json`` / ``keypoints_results.json`` and the AP is computed from those files.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    sigmas = np.asarray(sigmas, dtype=np.float64)
    dataset = coco_keypoint_gt(gt, len(sigmas))
    res: list[dict] | str = coco_keypoint_results(dt)
    with contextlib.redirect_stdout(io.StringIO()):
        if coco_dir is not None:
            coco_dir = Path(coco_dir)
            coco_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(coco_dir / "keypoints_gt.json", dataset, indent=None, sort_keys=False)
            atomic_write_json(coco_dir / "keypoints_results.json", res, indent=None, sort_keys=False)
            coco_gt = COCO(str(coco_dir / "keypoints_gt.json"))
            res = str(coco_dir / "keypoints_results.json")
        else:
            coco_gt = COCO()
            coco_gt.dataset = dataset
            coco_gt.createIndex()
    if not dt:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(res)
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.params.imgIds = [im["id"] for im in dataset["images"]]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = [max(float(v), 0.0) for v in ev.stats[:3]]  # -1 means "no ground truth": report 0
    return {"AP": s[0], "AP50": s[1], "AP75": s[2]}


def pck(pred_xy: np.ndarray, gt: np.ndarray, norm: np.ndarray, alpha: float = 0.1) -> float:
    """Fraction of labelled keypoints (v > 0) predicted within ``alpha * norm`` pixels.

    ``pred_xy`` [N,K,2], ``gt`` [N,K,3], ``norm`` [N] (e.g. the longest side of each person box).
    """
    pred_xy, gt, norm = np.asarray(pred_xy, float), np.asarray(gt, float), np.asarray(norm, float)
    vis = gt[..., 2] > 0
    if not vis.any():
        return float("nan")
    dist = np.linalg.norm(pred_xy - gt[..., :2], axis=-1)
    ok = dist <= alpha * norm[:, None]
    return float(ok[vis].mean())


class PoseMetric:
    """Collects person-level ground truth and predictions; ``compute`` gives AP, AP50, AP75, PCK (and, for the
    308-point layout, PCK per body / hands / face and the OKS AP of the 25 body points, ``AP/body``)."""

    def __init__(self, sigmas: np.ndarray, alpha: float = 0.1, coco_dir: str | Path | None = None):
        self.sigmas = np.asarray(sigmas)
        self.alpha = alpha
        self.coco_dir = coco_dir  # where compute() writes keypoints_gt.json / keypoints_results.json
        self.gt: list[dict] = []
        self.dt: list[dict] = []

    def update(self, image_id: int, gt_kpts: np.ndarray, bbox: Sequence[float], area: float,
               pred_kpts: np.ndarray, score: float) -> None:
        self.gt.append({"image_id": image_id, "keypoints": np.asarray(gt_kpts), "bbox": list(bbox), "area": area})
        self.dt.append({"image_id": image_id, "keypoints": np.asarray(pred_kpts), "score": score})

    def compute(self) -> dict[str, float]:
        out = oks_ap(self.gt, self.dt, self.sigmas, self.coco_dir)
        if self.gt:
            p = np.stack([d["keypoints"][:, :2] for d in self.dt])
            g = np.stack([d["keypoints"] for d in self.gt])
            norm = np.array([max(d["bbox"][2], d["bbox"][3]) for d in self.gt])
            out[f"PCK@{self.alpha:g}"] = pck(p, g, norm, self.alpha)
            if g.shape[1] == NUM_KEYPOINTS:  # per group: the face's 243 points dominate the overall figure
                for name, idx in (("body", BODY), ("hands", HANDS), ("face", FACE)):
                    out[f"PCK@{self.alpha:g}/{name}"] = pck(p[:, idx], g[:, idx], norm, self.alpha)
                # OKS AP over the 25 body points alone: the whole-body AP needs all 243 face points placed
                # to about a pixel at small scales (face sigmas about 0.019) and reads 0 long before the body does
                idx = np.asarray(BODY)
                out["AP/body"] = oks_ap([{**d, "keypoints": d["keypoints"][idx]} for d in self.gt],
                                        [{**d, "keypoints": d["keypoints"][idx]} for d in self.dt],
                                        self.sigmas[idx])["AP"]
        return out


# ------------------------------------------------------------------------------------------ seg


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Boolean map of the pixels whose label differs from their right or lower neighbour (an [H,W] map)."""
    labels = np.asarray(labels)
    edges = np.zeros(labels.shape, bool)
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edges


def boundary_tolerance(hw: tuple[int, int], frac: float = 0.0075) -> float:
    """Matching distance of the boundary F1 in pixels: ``frac`` of the image diagonal, at least 1 (the
    0.75 % of the boundary F-measure of Csurka et al., 2013)."""
    return max(1.0, frac * float(np.hypot(*hw)))


def boundary_f1(pred: np.ndarray, target: np.ndarray, tol: float | None = None) -> float:
    """F1 of the predicted label edges against the true ones, an edge pixel counting as matched within
    ``tol`` pixels of an edge of the other map (default ``boundary_tolerance``). Label maps [H,W]; nan when
    neither map has an edge, 0 when only one has."""
    pe, te = label_edges(pred), label_edges(target)
    if not pe.any() and not te.any():
        return float("nan")
    if not pe.any() or not te.any():
        return 0.0
    tol = boundary_tolerance(pe.shape) if tol is None else tol
    precision = float((ndimage.distance_transform_edt(~te)[pe] <= tol).mean())
    recall = float((ndimage.distance_transform_edt(~pe)[te] <= tol).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


class SegMetric:
    """Confusion-matrix IoU over ``num_classes`` (pixels labelled ``ignore_index`` are skipped) and the
    mean over images of the part-boundary F1 (``boundary_f1``; ignored pixels take the true background's
    place in both maps)."""

    def __init__(self, num_classes: int, names: Sequence[str] | None = None, ignore_index: int = 255):
        self.n = num_classes
        self.names = list(names) if names is not None else [str(i) for i in range(num_classes)]
        self.ignore = ignore_index
        self.conf = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.f1: list[float] = []

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        if np.ndim(pred) == 2 and np.shape(pred) == np.shape(target):
            pm, tm = np.array(pred), np.asarray(target)
            ignored = tm == self.ignore
            pm[ignored] = 0
            f1 = boundary_f1(pm, np.where(ignored, 0, tm))
            if np.isfinite(f1):
                self.f1.append(f1)
        pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
        keep = target != self.ignore
        idx = target[keep].astype(np.int64) * self.n + pred[keep].astype(np.int64)
        self.conf += np.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def iou(self) -> np.ndarray:
        tp = np.diag(self.conf).astype(np.float64)
        union = self.conf.sum(0) + self.conf.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def compute(self) -> dict[str, float]:
        iou = self.iou()
        out = {"mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
               "pixel_acc": float(np.diag(self.conf).sum() / max(self.conf.sum(), 1)),
               "boundary_F1": float(np.mean(self.f1)) if self.f1 else float("nan")}
        for name, v in zip(self.names, iou):
            out[f"IoU/{name}"] = float(v)
        return out


# ------------------------------------------------------------------------------------- pointmap


def scale_align(pred: np.ndarray, target: np.ndarray) -> float:
    """Least-squares scale ``s`` minimising ||s * pred - target||^2 over the given points ([N,3])."""
    den = float((pred * pred).sum())
    return float((pred * target).sum() / den) if den > 0 else 1.0


class PointmapMetric:
    """Scale-invariant pointmap error (per image, averaged) and the error at visible keypoints."""

    def __init__(self):
        self.errs: list[float] = []
        self.kpt_errs: list[float] = []

    def update(self, pred: np.ndarray, target: np.ndarray, valid: np.ndarray,
               kpts: np.ndarray | None = None) -> None:
        """``pred``/``target`` [H,W,3], ``valid`` [H,W] bool, ``kpts`` [K,3] pixel x, y, v (optional)."""
        valid = np.asarray(valid, bool)
        if not valid.any():
            return
        p, t = pred[valid].astype(np.float64), target[valid].astype(np.float64)
        s = scale_align(p, t)
        self.errs.append(float(np.linalg.norm(s * p - t, axis=1).mean()))
        if kpts is not None:
            h, w = valid.shape
            k = np.asarray(kpts, float)
            xi, yi = np.round(k[:, 0]).astype(int), np.round(k[:, 1]).astype(int)
            ok = (k[:, 2] > 0) & (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            ok[ok] &= valid[yi[ok], xi[ok]]
            if ok.any():
                d = s * pred[yi[ok], xi[ok]].astype(np.float64) - target[yi[ok], xi[ok]]
                self.kpt_errs.extend(np.linalg.norm(d, axis=1).tolist())

    def compute(self) -> dict[str, float]:
        return {"si_error": float(np.mean(self.errs)) if self.errs else float("nan"),
                "kpt_error": float(np.mean(self.kpt_errs)) if self.kpt_errs else float("nan")}


# --------------------------------------------------------------------------------------- normal


def unit(v: np.ndarray) -> np.ndarray:
    """Vectors along the last axis scaled to unit length (zero vectors stay zero)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-8)


def angular_error_deg(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Angle in degrees between corresponding vectors ([...,3]); inputs need not be unit length."""
    return np.degrees(np.arccos(np.clip((unit(pred) * unit(target)).sum(-1), -1.0, 1.0)))


def neighbour_energy(vectors: np.ndarray, valid: np.ndarray) -> float:
    """Sum of the squared change between horizontally and vertically neighbouring pixels of a [H,W,C] map,
    over the pairs where both pixels are valid (a blurred edge spreads one large step into several small
    ones and so has less)."""
    total = 0.0
    for a, b, ok in ((vectors[:, :-1], vectors[:, 1:], valid[:, :-1] & valid[:, 1:]),
                     (vectors[:-1], vectors[1:], valid[:-1] & valid[1:])):
        total += float(np.square((a - b)[ok].astype(np.float64)).sum())
    return total


class NormalMetric:
    """Mean/median angular error and % of pixels under 11.25/22.5/30 degrees over all valid pixels, and
    the gradient ratio: the root-mean-square change of the predicted unit normals between neighbouring
    valid pixels over the truth's (1: edges and folds as sharp as the truth's; a blurred prediction stays
    below 1, a noisy one can exceed it).

    The median comes from a 0.01-degree histogram (exact to 0.01 degrees, constant memory).
    """

    THRESHOLDS = (11.25, 22.5, 30.0)

    def __init__(self):
        self.hist = np.zeros(18000, dtype=np.int64)
        self.sum = 0.0
        self.n = 0
        self.under = np.zeros(len(self.THRESHOLDS), dtype=np.int64)
        self.energy = np.zeros(2)  # neighbour energy of prediction, truth

    def update(self, pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> None:
        if np.ndim(pred) == 3 and np.ndim(valid) == 2:
            self.energy += [neighbour_energy(unit(v), np.asarray(valid, bool)) for v in (pred, target)]
        ang = angular_error_deg(pred[valid], target[valid]).astype(np.float64)
        self.sum += float(ang.sum())
        self.n += ang.size
        self.under += np.array([(ang < t).sum() for t in self.THRESHOLDS])
        self.hist += np.bincount(np.clip((ang * 100).astype(np.int64), 0, 17999), minlength=18000)

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            return {"mean_deg": float("nan"), "median_deg": float("nan"),
                    **{f"<{t:g}": float("nan") for t in self.THRESHOLDS}}
        cum = np.cumsum(self.hist)
        lo, hi = (np.searchsorted(cum, r + 1) for r in ((self.n - 1) // 2, self.n // 2))
        median = (lo + hi + 1) / 200  # mean of the two middle ranks' bin centres
        out = {"mean_deg": self.sum / self.n, "median_deg": float(median),
               "grad_ratio": float(np.sqrt(self.energy[0] / self.energy[1])) if self.energy[1] > 0 else float("nan")}
        for t, c in zip(self.THRESHOLDS, self.under):
            out[f"<{t:g}"] = 100.0 * c / self.n
        return out


# --------------------------------------------------------------------------------------- albedo


def psnr(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over the valid pixels (values in [0, peak])."""
    d = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2
    if valid is not None:
        d = d[np.asarray(valid, bool)]
    mse = float(d.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


class AlbedoMetric:
    """Albedo MAE (over valid pixels and channels) and PSNR averaged over images."""

    def __init__(self):
        self.abs_sum = 0.0
        self.n = 0
        self.psnrs: list[float] = []

    def update(self, pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> None:
        valid = np.asarray(valid, bool)
        if not valid.any():
            return
        p, t = np.clip(pred[valid], 0, 1).astype(np.float64), target[valid].astype(np.float64)
        self.abs_sum += float(np.abs(p - t).sum())
        self.n += p.size
        self.psnrs.append(min(psnr(p, t), 100.0))

    def compute(self) -> dict[str, float]:
        return {"MAE": self.abs_sum / self.n if self.n else float("nan"),
                "PSNR": float(np.mean(self.psnrs)) if self.psnrs else float("nan")}


# Headline metric of each task (for tables) and whether higher is better.
HEADLINE = {"pose": ("AP", True), "seg": ("mIoU", True), "pointmap": ("si_error", False),
            "normal": ("mean_deg", False), "albedo": ("MAE", False)}
