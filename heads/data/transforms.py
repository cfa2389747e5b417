"""Geometry of samples: top-down person crops (affine, for pose), whole-image resizing (dense tasks),
horizontal flips of every label kind, Gaussian heatmap targets and heatmap decoding."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from humans.shared.humans.keypoints import flip_index
from humans.shared.humans.parts import PART_FLIP

_FLIP_KPT = flip_index()


def crop_affine(bbox, out_hw: tuple[int, int], expand: float = 1.25) -> np.ndarray:
    """2x3 affine mapping the person box (grown by ``expand`` and to the output aspect) onto the output."""
    x, y, w, h = (float(v) for v in bbox)
    oh, ow = out_hw
    cx, cy = x + w / 2, y + h / 2
    w, h = max(w, 1.0) * expand, max(h, 1.0) * expand
    if w / h > ow / oh:
        h = w * oh / ow
    else:
        w = h * ow / oh
    s = ow / w
    return np.array([[s, 0, ow / 2 - s * cx], [0, s, oh / 2 - s * cy]], dtype=np.float64)


def invert_affine(a: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(a)


def apply_affine(points_xy: np.ndarray, a: np.ndarray) -> np.ndarray:
    pts = np.asarray(points_xy, np.float64)
    return pts @ a[:, :2].T + a[:, 2]


def warp_image(img: np.ndarray, a: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(img, a, (out_hw[1], out_hw[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


def resize_image(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if (h > out_hw[0] and w > out_hw[1]) else cv2.INTER_LINEAR
    return cv2.resize(img, (out_hw[1], out_hw[0]), interpolation=interp)


def resize_nearest(arr: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map (keeps classes and avoids mixing with masked zeros);
    trailing dimensions are kept (OpenCV drops a single channel)."""
    if arr.dtype == bool:
        out = cv2.resize(arr.astype(np.uint8), (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    else:
        out = cv2.resize(arr, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST)
    return out.reshape(*out.shape[:2], *arr.shape[2:])


def flip_keypoints(kpts: np.ndarray, width: int) -> np.ndarray:
    """Mirror [K,3] keypoints of an image ``width`` pixels wide and swap left/right names."""
    out = kpts[_FLIP_KPT].copy()
    lab = out[:, 2] > 0
    out[lab, 0] = width - 1 - out[lab, 0]
    return out


def flip_parts(parts: np.ndarray) -> np.ndarray:
    flipped = parts[:, ::-1]
    lut = np.arange(256, dtype=np.uint8)
    lut[: len(PART_FLIP)] = PART_FLIP
    return lut[flipped]


def flip_vector_map(arr: np.ndarray) -> np.ndarray:
    """Mirror an HxWx3 camera-frame map (normals, points): columns reversed and x negated."""
    out = arr[:, ::-1].copy()
    out[..., 0] *= -1
    return out


def gaussian_heatmaps(kpts: torch.Tensor, hm_hw: tuple[int, int], stride: float, sigma: float = 2.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps [B,K,h,w] (peak 1) for keypoints [B,K,3] in input pixels, and weights [B,K] (1 if
    labelled and inside the heatmap, else 0). Made per batch so datasets store keypoints only."""
    h, w = hm_hw
    kpts = kpts.float()
    # pixel-centre aligned: heatmap cell j covers input pixels [j*s, (j+1)*s), centre (j+0.5)*s-0.5, so
    # a horizontal flip of the input is exactly a flip of the heatmap columns
    cx = (kpts[..., 0] + 0.5) / stride - 0.5
    cy = (kpts[..., 1] + 0.5) / stride - 0.5
    inside = (kpts[..., 2] > 0) & (cx >= -0.5) & (cx < w - 0.5) & (cy >= -0.5) & (cy < h - 0.5)
    xs = torch.arange(w, dtype=torch.float32, device=kpts.device)
    ys = torch.arange(h, dtype=torch.float32, device=kpts.device)
    gx = torch.exp(-((xs - cx[..., None]) ** 2) / (2 * sigma * sigma))  # [B,K,w]
    gy = torch.exp(-((ys - cy[..., None]) ** 2) / (2 * sigma * sigma))  # [B,K,h]
    hm = gy[..., :, None] * gx[..., None, :] * inside[..., None, None]
    return hm, inside.float()


def decode_heatmaps(hm: np.ndarray, stride: float) -> tuple[np.ndarray, np.ndarray]:
    """Argmax + quarter-pixel shift towards the higher neighbour: [K,2] input-pixel x, y and [K] scores."""
    k, h, w = hm.shape
    flat = hm.reshape(k, -1)
    idx = flat.argmax(1)
    score = flat[np.arange(k), idx]
    y, x = (idx // w).astype(np.float64), (idx % w).astype(np.float64)
    xi, yi = x.astype(int), y.astype(int)
    for j in range(k):
        if 0 < xi[j] < w - 1:
            x[j] += 0.25 * np.sign(hm[j, yi[j], xi[j] + 1] - hm[j, yi[j], xi[j] - 1])
        if 0 < yi[j] < h - 1:
            y[j] += 0.25 * np.sign(hm[j, yi[j] + 1, xi[j]] - hm[j, yi[j] - 1, xi[j]])
    return np.stack([(x + 0.5) * stride - 0.5, (y + 0.5) * stride - 0.5], axis=1), score
