"""Losses of the heads against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from humans.heads import losses as L
from humans.heads.config import LossConfig


def test_ohem_picks_hardest_keypoints():
    # 10 keypoints on 2x2 heatmaps; keypoint k has error sqrt(k) everywhere -> per-keypoint MSE = k.
    b, k = 2, 10
    target = torch.zeros(b, k, 2, 2)
    err = torch.arange(k, dtype=torch.float32).sqrt()
    pred = err[None, :, None, None].expand(b, k, 2, 2).clone()
    # image 1: reverse the order so the hardest keypoints are 0, 1, 2
    pred[1] = err.flip(0)[:, None, None].expand(k, 2, 2)
    weight = torch.ones(b, k)
    per = L.per_keypoint_heatmap_mse(pred, target, weight)
    assert torch.allclose(per[0], torch.arange(k, dtype=torch.float32), atol=1e-5)
    idx = L.ohem_select(per, 0.3)  # ceil(0.3 * 10) = 3
    assert sorted(idx[0].tolist()) == [7, 8, 9]
    assert sorted(idx[1].tolist()) == [0, 1, 2]
    loss = L.heatmap_ohem_loss(pred, target, weight, 0.3)
    assert loss.item() == pytest.approx((9 + 8 + 7) / 3, rel=1e-5)
    # an unlabelled keypoint (weight 0) is never "hard": zero its worst one
    weight[0, 9] = 0
    assert sorted(L.ohem_select(L.per_keypoint_heatmap_mse(pred, target, weight), 0.3)[0].tolist()) == [6, 7, 8]


def test_dice_and_ce_on_known_mask():
    # 1x1x2x2 image, 2 classes; target = [[0,1],[1,1]]; logits make p(class1) = [.5,.5,.5,1-ish]
    target = torch.tensor([[[0, 1], [1, 1]]])
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1, 1, 1] = 50.0  # pixel (1,1) certainly class 1
    # class 0: inter = .5, card = (.5+.5+.5+0) + 1 = 2.5 -> dice = (1+1)/(2.5+1) with eps=1
    # class 1: inter = .5+.5+1 = 2, card = (.5*3 + 1) + 3 = 5.5 -> dice = (4+1)/(5.5+1)
    expected = 1 - ((2.0 / 3.5) + (5.0 / 6.5)) / 2
    assert L.dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)
    ce = (3 * math.log(2) + 0.0) / 4
    assert L.seg_loss(logits, target).item() == pytest.approx(ce + expected, rel=1e-4)
    # perfect logits: dice loss ~ 0
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 100
    assert L.dice_loss(perfect, target, eps=1e-6).item() == pytest.approx(0.0, abs=1e-5)


def test_l2_gradient_and_mask():
    pred = torch.zeros(1, 1, 3, 3)
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, :, 2] = 1.0  # a step in x in the last column
    valid = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    assert L.masked_mse(pred, target, valid).item() == pytest.approx(3 / 9)
    # x-differences: 3 rows x 2 pairs, step only in the second pair -> 3 of 6 pairs have |d| = 1;
    # y-differences: all 0 (6 pairs) -> gradient loss = 3 / 12
    assert L.gradient_loss(pred, target, valid).item() == pytest.approx(3 / 12)
    # masking the last column out: no error left at all
    valid[..., 2] = False
    assert L.masked_mse(pred, target, valid).item() == 0.0
    assert L.gradient_loss(pred, target, valid).item() == 0.0
    # a constant offset has no gradient error
    assert L.gradient_loss(target + 5, target).item() == pytest.approx(0.0)


def test_cosine_loss_on_known_vectors():
    t = torch.tensor([0.0, 0.0, 1.0])[None, :, None, None].expand(1, 3, 1, 2).clone()
    p = t.clone()
    p[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # 90 degrees -> 1 - cos = 1
    assert L.cosine_loss(p, t).item() == pytest.approx(0.5)
    assert L.cosine_loss(3 * t, t).item() == pytest.approx(0.0, abs=1e-6)  # length does not matter
    assert L.normal_loss(t, t, None).item() == pytest.approx(0.0, abs=1e-6)


def test_mean_colour_term_invariant_as_designed():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 8, generator=g)
    valid = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    valid[:, :, :2] = False
    # zero-mean (over the valid pixels) texture added to the target: mean-colour term stays 0, L2 not
    tex = torch.randn(2, 3, 8, 8, generator=g) * valid
    tex = tex - (tex.sum(dim=(2, 3), keepdim=True) / valid.sum(dim=(2, 3), keepdim=True)) * valid
    assert L.mean_colour_loss(target + tex, target, valid).item() == pytest.approx(0.0, abs=1e-10)
    assert L.masked_mse(target + tex, target, valid).item() > 0.1
    # a pixel permutation inside the valid area keeps the mean colour
    perm = target.clone()
    perm[:, :, 2:] = target[:, :, 2:].flip(-1)
    assert L.mean_colour_loss(perm, target, valid).item() == pytest.approx(0.0, abs=1e-10)
    # a constant shift c gives c^2; invalid pixels do not count
    shifted = target + 0.2
    shifted[:, :, :2] = 9.0
    assert L.mean_colour_loss(shifted, target, valid).item() == pytest.approx(0.04, rel=1e-4)
    # the albedo loss is the sum of its three terms
    total = L.albedo_loss(shifted, target, valid).item()
    parts = (L.masked_mse(shifted, target, valid) + L.gradient_loss(shifted, target, valid)
             + L.mean_colour_loss(shifted, target, valid)).item()
    assert total == pytest.approx(parts)


def test_pointmap_loss_is_scale_invariant_but_anchored():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 3, 6, 5, generator=g) + 1.0
    valid = torch.ones(2, 1, 6, 5, dtype=torch.bool)
    w = LossConfig()
    # the anchor asks for each image's shape at unit RMS length, not for its distance
    shape = t / L.pointmap_scale(t, valid).view(2, 1, 1, 1)
    assert torch.allclose((shape ** 2).sum(1).mean((1, 2)), torch.ones(2))
    # a prediction off by a per-image scale: aligned L2 and gradient terms vanish, the anchor remains
    p = shape * torch.tensor([0.5, 3.0]).view(2, 1, 1, 1)
    assert torch.allclose(L.scale_aligned(p, t, valid), t, atol=1e-5)
    expected = w.pointmap_abs * L.masked_mse(p, shape, valid)
    assert L.pointmap_loss(p, t, valid, w).item() == pytest.approx(expected.item(), rel=1e-4)
    assert L.pointmap_loss(shape, t, valid, w).item() == pytest.approx(0.0, abs=1e-6)
    assert L.pointmap_loss(t, t, valid, w).item() > 0.1 * w.pointmap_abs  # the raw points: their scale is off


def test_balanced_class_weights_follow_batch_frequencies():
    from humans.heads.losses import balanced_class_weights, seg_loss

    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 0, :] = 1                                  # class 1: 10 of 100 pixels; class 2 absent
    target[0, 9, 0] = 255                                # ignored: not counted (class 0: 89 of 99)
    w = balanced_class_weights(target, 3, power=1.0)
    f = torch.tensor([89 / 99, 10 / 99, 0.0])
    torch.testing.assert_close(w, torch.tensor([1 / f[0], 1 / f[1], 0.0]) / 2)   # mean pixel weight 1
    torch.testing.assert_close((w * f).sum(), torch.tensor(1.0))
    torch.testing.assert_close(balanced_class_weights(target, 3, power=0.0), torch.tensor([1.0, 1.0, 0.0]))
    # a classifier that always says "class 0" is punished more when classes are balanced
    logits = torch.zeros(1, 3, 10, 10)
    logits[:, 0] = 3.0
    plain, balanced = seg_loss(logits, target, dice_weight=0.0), seg_loss(logits, target, dice_weight=0.0, balance=0.5)
    assert balanced > 2 * plain                          # 0.85 vs 0.40: the rare class counts more


def test_seg_loss_equals_the_one_hot_formula_in_value_and_gradient():
    """The seg loss's gather / bincount Dice and shared log-softmax give the one-hot textbook formula's value and
    gradient (channels-last logits, ignored pixels, class-balanced cross-entropy, a class absent from the batch)."""
    import torch.nn.functional as F

    from humans.heads.losses import balanced_class_weights, seg_loss

    g = torch.Generator().manual_seed(5)
    b, c, h, w = 3, 7, 10, 8
    base = torch.randn(b, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, c - 1, (b, h, w), generator=g)     # class c-1 never present
    target[:, :2] = 255

    def reference(logits):
        valid = target != 255
        ce = F.cross_entropy(logits, target, weight=balanced_class_weights(target, c, 0.25), ignore_index=255)
        prob = logits.softmax(1) * valid[:, None]
        onehot = F.one_hot(target.clamp(0, c - 1) * valid, c).permute(0, 3, 1, 2).float() * valid[:, None]
        inter, area = (prob * onehot).sum((0, 2, 3)), onehot.sum((0, 2, 3))
        dice = (2 * inter + 1.0) / (prob.sum((0, 2, 3)) + area + 1.0)
        return ce + 0.7 * (1 - dice[area > 0].mean())

    x1, x2 = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    got, want = seg_loss(x1, target, dice_weight=0.7, balance=0.25), reference(x2)
    got.backward()
    want.backward()
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    assert torch.allclose(x1.grad, x2.grad, rtol=1e-4, atol=1e-9)
    assert x1.grad[:, :, :2].abs().max() == 0                   # ignored pixels get no gradient
