"""Training losses of the five heads (each task's spec in ``heads.tasks`` picks its own), all masked by a per-pixel validity map where the task has one.

- pose: heatmap MSE with online hard keypoint mining (OHEM: the hardest ``ratio`` of keypoints per
  image carry the loss);
- seg: cross-entropy + soft Dice (Dice averaged over the classes present in the target);
- pointmap: L2 + gradient on the prediction aligned by its per-image least-squares scale (the
  metric's scale invariance), plus a small plain L2 that anchors the absolute scale;
- normal: (1 - cos) + L2 + gradient;
- albedo: L2 + gradient + mean-colour alignment.

"L2" is the mean squared error per valid pixel and channel; "gradient" is the mean absolute
difference between the finite differences (x and y) of prediction and target over neighbour pairs
that are both valid; the "mean-colour" term is the squared difference between the per-image mean
colours of prediction and target over the valid pixels, so it ignores any zero-mean change of the
prediction (texture) and measures only global colour balance.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from humans.heads.config import LossConfig


def _as_mask(valid: Tensor | None, like: Tensor) -> Tensor:
    """A float [B,1,H,W] mask (ones when ``valid`` is None)."""
    if valid is None:
        return torch.ones_like(like[:, :1])
    if valid.dim() == 3:
        valid = valid[:, None]
    return valid.to(like.dtype)


def masked_mse(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean squared error over valid pixels and all channels."""
    m = _as_mask(valid, pred)
    denom = (m.sum() * pred.shape[1]).clamp_min(1.0)
    return (((pred - target) ** 2) * m).sum() / denom


def gradient_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean |d(pred - target)| of x and y finite differences over pairs of valid neighbours."""
    m = _as_mask(valid, pred)
    d = pred - target
    dx = (d[..., :, 1:] - d[..., :, :-1]).abs()
    dy = (d[..., 1:, :] - d[..., :-1, :]).abs()
    mx = m[..., :, 1:] * m[..., :, :-1]
    my = m[..., 1:, :] * m[..., :-1, :]
    c = pred.shape[1]
    num = (dx * mx).sum() + (dy * my).sum()
    den = ((mx.sum() + my.sum()) * c).clamp_min(1.0)
    return num / den


def cosine_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean (1 - cos(pred, target)) over valid pixels (vectors along dim 1)."""
    m = _as_mask(valid, pred)[:, 0]
    cos = F.cosine_similarity(pred, target, dim=1, eps=1e-6)
    return ((1.0 - cos) * m).sum() / m.sum().clamp_min(1.0)


def mean_colour_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Squared difference of per-image mean colours over valid pixels, averaged over images and channels.

    Invariant to any change of ``pred`` whose mean over the valid pixels is zero (e.g. texture or a
    permutation of pixels), and equal to ``c**2`` for a constant colour shift ``c``.
    """
    m = _as_mask(valid, pred)
    n = m.sum(dim=(2, 3)).clamp_min(1.0)  # [B,1]
    mp = (pred * m).sum(dim=(2, 3)) / n
    mt = (target * m).sum(dim=(2, 3)) / n
    has = (m.sum(dim=(2, 3)) > 0).to(pred.dtype)  # images without valid pixels add nothing
    return (((mp - mt) ** 2) * has).sum() / (has.sum() * pred.shape[1]).clamp_min(1.0)


def per_keypoint_heatmap_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """[B,K] mean squared heatmap error per keypoint, times its weight (0 for unlabelled keypoints)."""
    return ((pred - target) ** 2).mean(dim=(2, 3)) * weight


def ohem_select(per_kpt: Tensor, ratio: float) -> Tensor:
    """Indices [B,k] of the hardest ``ceil(ratio * K)`` keypoints per image (largest loss first)."""
    k = max(1, int(math.ceil(ratio * per_kpt.shape[1])))
    return per_kpt.topk(k, dim=1).indices


def heatmap_ohem_loss(pred: Tensor, target: Tensor, weight: Tensor, ratio: float = 0.3) -> Tensor:
    """Heatmap MSE keeping only the hardest ``ratio`` of keypoints of each image (OHEM)."""
    per = per_keypoint_heatmap_mse(pred, target, weight)
    idx = ohem_select(per, ratio)
    return per.gather(1, idx).mean()


def dice_loss(logits: Tensor, target: Tensor, ignore_index: int = 255, eps: float = 1.0) -> Tensor:
    """1 - soft Dice, averaged over the classes present in the (non-ignored) target of the batch."""
    return _soft_dice(logits.softmax(dim=1), target, ignore_index, eps)


def _soft_dice(prob: Tensor, target: Tensor, ignore_index: int, eps: float) -> Tensor:
    """``dice_loss`` from class probabilities [B, C, H, W]. No one-hot map: the intersection of class c
    is the sum of p_c over the pixels labelled c (a gather and an index_add) and its label area a
    bincount; the same sums as a one-hot product, at a fraction of the memory traffic (the seg head's
    loss 31-47 -> 19-21 ms per batch of 16 at 64x48, benchmarks/results/heads.md)."""
    c = prob.shape[1]
    valid = target != ignore_index
    labels = torch.where(valid, target, torch.zeros_like(target))
    lv = labels[valid]
    area = torch.bincount(lv, minlength=c)[:c].to(prob.dtype)
    p_true = prob.gather(1, labels[:, None])[:, 0][valid]
    inter = torch.zeros(c, dtype=prob.dtype, device=prob.device).index_add(0, lv, p_true)
    card = (prob * valid[:, None].to(prob.dtype)).sum(dim=(0, 2, 3)) + area
    dice = (2 * inter + eps) / (card + eps)
    present = area > 0
    if not present.any():
        return prob.sum() * 0.0
    return 1.0 - dice[present].mean()


def balanced_class_weights(target: Tensor, num_classes: int, power: float, ignore_index: int = 255) -> Tensor:
    """Cross-entropy weights [C] from the batch's class frequencies f_c: f_c ** -power for present
    classes (0 for absent ones), scaled so that the batch's pixels keep a mean weight of 1."""
    valid = target[target != ignore_index]
    counts = torch.bincount(valid.flatten(), minlength=num_classes)[:num_classes].to(torch.float32)
    freq = counts / counts.sum().clamp_min(1.0)
    w = torch.where(counts > 0, freq.clamp_min(1e-12) ** -power, torch.zeros_like(freq))
    return w / (w * freq).sum().clamp_min(1e-12)


def seg_loss(logits: Tensor, target: Tensor, ignore_index: int = 255, dice_weight: float = 1.0,
             balance: float = 0.0) -> Tensor:
    """Cross-entropy (class-balanced by ``balance``: weights f_c ** -balance of the batch's class
    frequencies; 0 plain) + ``dice_weight`` * Dice loss."""
    weight = balanced_class_weights(target, logits.shape[1], balance, ignore_index).to(logits) if balance else None
    logp = logits.log_softmax(dim=1)          # one softmax for both terms
    ce = F.nll_loss(logp, target, weight=weight, ignore_index=ignore_index)
    if not dice_weight:
        return ce
    return ce + dice_weight * _soft_dice(logp.exp(), target, ignore_index, eps=1.0)


def scale_aligned(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """``s * pred`` with the per-image least-squares scale ``s = <pred, target> / <pred, pred>`` over
    valid pixels (differentiable): focal-normalised points are known only up to scale from one image."""
    m = _as_mask(valid, pred)
    num = (pred * target * m).sum(dim=(1, 2, 3))
    den = (pred * pred * m).sum(dim=(1, 2, 3)).clamp_min(1e-6)
    return pred * (num / den).view(-1, 1, 1, 1)


def pointmap_scale(points: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per image, the RMS length of its labelled points (``points`` [N, 3, H, W], ``valid`` [N, H, W] or
    [N, 1, H, W]; None: all); 1 where nothing is labelled. Dividing by it keeps each pointmap's shape and
    drops its scale (the person's distance), which one image cannot tell and the metric ignores."""
    m = _as_mask(valid, points)[:, 0]
    n = m.sum(dim=(1, 2))
    sq = (points.float() ** 2).sum(dim=1).mul(m).sum(dim=(1, 2))
    return torch.where(n > 0, (sq / n.clamp(min=1)).sqrt(), torch.ones_like(n)).clamp(min=1e-6)


def pointmap_loss(pred: Tensor, target: Tensor, valid: Tensor | None, w: LossConfig = LossConfig()) -> Tensor:
    """L2 + gradient on the scale-aligned prediction (as the metric), plus ``w.pointmap_abs`` x plain L2 to
    the target over its own scale (``pointmap_scale``), anchoring the prediction's scale at 1 without
    asking it for each person's distance: with the raw target there, the head spent its fit on distance
    and scored worse than the mean shape (2026-12-04 night, benchmarks/results/main_job.md)."""
    aligned = scale_aligned(pred, target, valid)
    shape = target / pointmap_scale(target, valid).view(-1, 1, 1, 1).to(target.dtype)
    return (w.l2 * masked_mse(aligned, target, valid) + w.gradient * gradient_loss(aligned, target, valid)
            + w.pointmap_abs * masked_mse(pred, shape, valid))


def normal_loss(pred: Tensor, target: Tensor, valid: Tensor | None, w: LossConfig = LossConfig()) -> Tensor:
    return (w.cosine * cosine_loss(pred, target, valid) + w.l2 * masked_mse(pred, target, valid)
            + w.gradient * gradient_loss(pred, target, valid))


def albedo_loss(pred: Tensor, target: Tensor, valid: Tensor | None, w: LossConfig = LossConfig()) -> Tensor:
    return (w.l2 * masked_mse(pred, target, valid) + w.gradient * gradient_loss(pred, target, valid)
            + w.mean_colour * mean_colour_loss(pred, target, valid))

