"""Metrics of the heads against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from humans.heads import metrics as M


def _people(n=6, k=308, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x0, y0 = rng.uniform(0, 50, 2)
        kp = np.zeros((k, 3))
        kp[:, 0] = x0 + rng.uniform(0, 80, k)
        kp[:, 1] = y0 + rng.uniform(0, 120, k)
        kp[:, 2] = 2
        kp[rng.random(k) < 0.3, 2] = 0  # some missing
        kp[kp[:, 2] == 0, :2] = 0
        out.append({"image_id": i, "keypoints": kp, "bbox": [x0, y0, 80, 120], "area": 80 * 120.0})
    return out


def test_oks_ap_perfect_and_perturbed():
    from humans.shared.humans.keypoints import SIGMAS

    gt = _people()
    perfect = [{"image_id": g["image_id"], "keypoints": g["keypoints"], "score": 1.0} for g in gt]
    ap = M.oks_ap(gt, perfect, SIGMAS)
    assert ap["AP"] == pytest.approx(1.0)
    # Gaussian noise of 1 / 2 / 3 px on every keypoint: AP falls with the noise (sigmas of face points
    # are small, so a few pixels already cost a lot on 80x120 px people)
    aps = []
    for sd in (1.0, 2.0, 3.0):
        rng = np.random.default_rng(1)
        noisy = []
        for g in gt:
            kp = g["keypoints"].copy()
            kp[:, :2] += rng.normal(0, sd, (len(kp), 2))
            noisy.append({"image_id": g["image_id"], "keypoints": kp, "score": 1.0})
        aps.append(M.oks_ap(gt, noisy, SIGMAS)["AP"])
    assert 1.0 > aps[0] > aps[1] > aps[2] > 0.0
    very = [{"image_id": g["image_id"], "keypoints": g["keypoints"] + [[30, 30, 0]], "score": 1.0} for g in gt]
    assert M.oks_ap(gt, very, SIGMAS)["AP"] == 0.0


def test_pck_known():
    gt = np.zeros((1, 4, 3))
    gt[0, :, 2] = [2, 2, 2, 0]
    pred = np.zeros((1, 4, 2))
    pred[0, 1] = [5, 0]   # within 0.1 * 100 = 10
    pred[0, 2] = [11, 0]  # outside
    pred[0, 3] = [99, 0]  # unlabelled: ignored
    assert M.pck(pred, gt, np.array([100.0]), 0.1) == pytest.approx(2 / 3)


def test_pose_metric_pck_per_keypoint_group():
    """Body points exact, hand points 5 px off (inside 0.1 x 120), face points 20 px off (outside):
    PCK 1 / 1 / 0 per group, and the overall PCK is the labelled-point-weighted mix, mostly face; the body
    points' own OKS AP is perfect."""
    from humans.shared.humans.keypoints import SIGMAS

    metric = M.PoseMetric(SIGMAS)
    gt = _people(n=3)
    for g in gt:
        pred = g["keypoints"].copy()
        pred[25:65, 0] += 5.0
        pred[65:, 1] += 20.0
        metric.update(g["image_id"], g["keypoints"], g["bbox"], g["area"], pred, 1.0)
    out = metric.compute()
    assert out["PCK@0.1/body"] == 1.0 and out["PCK@0.1/hands"] == 1.0 and out["PCK@0.1/face"] == 0.0
    # the body alone is exact, so its OKS AP is perfect while the whole-body AP is dragged down by the face
    assert out["AP/body"] == pytest.approx(1.0) and out["AP"] < 0.5
    labelled = np.stack([g["keypoints"][:, 2] > 0 for g in gt])
    assert out["PCK@0.1"] == pytest.approx(labelled[:, :65].sum() / labelled.sum())


def test_miou_on_known_mask():
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [255, 255, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 2, 1, 2], [1, 1, 1, 1]])
    m = M.SegMetric(4, names=["bg", "a", "b", "c"])
    m.update(pred, target)
    iou = m.iou()
    # class 0: tp 3, fp 0, fn 1 -> 3/4; class 1: tp 4, fp 2 -> 4/6; class 2: tp 3, fn 1 -> 3/4; class 3 absent
    assert iou[0] == pytest.approx(0.75)
    assert iou[1] == pytest.approx(4 / 6)
    assert iou[2] == pytest.approx(0.75)
    assert math.isnan(iou[3])
    out = m.compute()
    assert out["mIoU"] == pytest.approx((0.75 + 4 / 6 + 0.75) / 3)
    assert out["IoU/a"] == pytest.approx(4 / 6)
    assert out["pixel_acc"] == pytest.approx(10 / 12)


def _halves(boundary_col, h=20, w=20, right_label=1):
    m = np.zeros((h, w), np.int64)
    m[:, boundary_col:] = right_label
    return m


def test_boundary_f1_known_edges():
    truth = _halves(10)  # edge pixels: column 9
    assert M.boundary_tolerance((20, 20)) == 1.0  # 0.75 % of a 28-px diagonal, at least one pixel
    assert M.boundary_tolerance((192, 256)) == pytest.approx(2.4)
    assert M.boundary_f1(truth, truth) == 1.0
    assert M.boundary_f1(_halves(11), truth) == 1.0  # one pixel off: within tolerance
    assert M.boundary_f1(_halves(13), truth) == 0.0  # three pixels off
    assert M.boundary_f1(_halves(13), truth, tol=3) == 1.0
    spurious = truth.copy()
    spurious[:, 15:] = 2  # a second edge at column 14: precision 1/2, recall 1
    assert M.boundary_f1(spurious, truth) == pytest.approx(2 / 3)
    assert M.boundary_f1(np.zeros_like(truth), truth) == 0.0  # a flat prediction finds no edge
    assert math.isnan(M.boundary_f1(np.zeros_like(truth), np.zeros_like(truth)))


def test_seg_metric_boundary_f1_skips_ignored_pixels():
    truth, pred = _halves(10), _halves(10)
    truth[15:] = 255  # unlabelled rows: neither map's edges count there
    pred[15:] = 3
    m = M.SegMetric(4)
    m.update(pred, truth)
    m.update(_halves(13), _halves(10))
    assert m.compute()["boundary_F1"] == pytest.approx(0.5)  # mean of 1 and 0


def test_normal_gradient_ratio_of_sharp_and_blurred_crease():
    truth = np.zeros((3, 10, 3))
    truth[:, :5] = (0, 0, 1.0)
    truth[:, 5:] = (1.0, 0, 0)
    valid = np.ones((3, 10), bool)
    blurred = truth.copy()
    blurred[:, 5] = (1.0, 0, 1.0)  # the crease spread over two pixels (normalised to 45 degrees)
    for pred, ratio in ((truth * 2, 1.0), (np.full_like(truth, 0.5), 0.0), (blurred, math.sqrt(2 - math.sqrt(2)))):
        m = M.NormalMetric()
        m.update(pred, truth, valid)
        assert m.compute()["grad_ratio"] == pytest.approx(ratio)


def test_angular_error_known_vectors():
    t = np.array([[0, 0, 1.0], [0, 0, 1.0], [0, 0, 1.0], [1.0, 0, 0]])
    p = np.array([[0, 0, 2.0], [0, 1.0, 1.0], [1.0, 0, 0], [0, 1.0, 0]])
    ang = M.angular_error_deg(p, t)
    assert ang == pytest.approx([0.0, 45.0, 90.0, 90.0], abs=1e-5)
    m = M.NormalMetric()
    m.update(p[None], t[None], np.ones((1, 4), bool))
    out = m.compute()
    assert out["mean_deg"] == pytest.approx(56.25, abs=1e-4)
    assert out["median_deg"] == pytest.approx(67.5, abs=0.01)  # mean of 45 and 90
    assert out["<11.25"] == pytest.approx(25.0)
    assert out["<30"] == pytest.approx(25.0)
    m2 = M.NormalMetric()  # odd count: exact median
    m2.update(p[None, :3], t[None, :3], np.ones((1, 3), bool))
    assert m2.compute()["median_deg"] == pytest.approx(45.0, abs=0.01)


def test_pointmap_scale_invariant_error():
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, (6, 5, 3)) + [0, 0, 3]
    valid = np.ones((6, 5), bool)
    valid[0] = False
    m = M.PointmapMetric()
    kpts = np.array([[1, 2, 2], [3, 4, 2], [0, 0, 2], [2, 2, 0]], float)  # (0,0) is masked, last unlabelled
    m.update(0.5 * t, t, valid, kpts)  # a pure scale: error 0
    assert m.compute()["si_error"] == pytest.approx(0.0, abs=1e-9)
    # hand-computed case: target (0,0,1) everywhere on 25 valid pixels, prediction (0,0,2) except
    # (1,0,2) at pixel (x=1, y=2): s = <P,G>/<P,P> = 50/101; errors 1/101 (24 px) and
    # sqrt((50/101)^2 + (1/101)^2) at the odd pixel
    t = np.zeros((6, 5, 3))
    t[..., 2] = 1
    p = 2 * t
    p[2, 1, 0] = 1.0
    m = M.PointmapMetric()
    m.update(p, t, valid, kpts)
    out = m.compute()
    odd = math.hypot(50 / 101, 1 / 101)
    assert out["si_error"] == pytest.approx((24 / 101 + odd) / 25, rel=1e-9)
    # labelled keypoints on valid pixels: (x=1, y=2) the odd one, (x=3, y=4) a regular one
    assert out["kpt_error"] == pytest.approx((odd + 1 / 101) / 2, rel=1e-9)
    assert M.scale_align(2 * t[valid], t[valid]) == pytest.approx(0.5)


def test_albedo_mae_psnr_known():
    t = np.full((4, 4, 3), 0.5)
    p = t + 0.1
    valid = np.ones((4, 4), bool)
    assert M.psnr(p, t) == pytest.approx(20.0)
    m = M.AlbedoMetric()
    m.update(p, t, valid)
    out = m.compute()
    assert out["MAE"] == pytest.approx(0.1)
    assert out["PSNR"] == pytest.approx(20.0)
