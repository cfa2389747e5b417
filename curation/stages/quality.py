"""Stage 2: image quality: sharpness, exposure, information (entropy) and compression artefacts.

All pixel measures are taken on a grey image resized to ``analysis_long_side`` so thresholds do not
depend on the image size: sharpness is the variance of the Laplacian, exposure the mean grey level
and the fractions of crushed (<=5) and blown (>=250) pixels, information the grey-level entropy in
bits. Compression is judged twice: the JPEG quality estimated from the file's quantisation tables
(IJG scaling, header only) and the 8x8 blockiness at full resolution (mean gradient across block
boundaries divided by the mean gradient inside blocks).
"""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from ..config import QualityStage
from . import Decision

REASONS = ("blurry", "underexposed", "overexposed", "low_information", "compressed")

# The IJG standard luminance quantisation table (quality 50), in natural order.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)


def jpeg_quality(data: bytes) -> float | None:
    """Estimated IJG quality (1-100) of a JPEG from its luminance table; None for other formats."""
    if not data[:3] == b"\xff\xd8\xff":
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            tables = getattr(im, "quantization", None)
    except Exception:  # noqa: BLE001 - the pixel decode already succeeded; a missing table is "unknown"
        return None
    if not tables or 0 not in tables:
        return None
    q = np.asarray(tables[0], dtype=np.float64)
    if q.size != 64:
        return None
    # the table's order (zigzag or natural) does not matter: only sums over all entries are used;
    # entries clipped at 255 (very low qualities) are left out of the ratio
    ref = np.sort(_IJG_LUMA)
    q = np.sort(q)
    ok = q < 255
    if not ok.any():
        return 1.0
    scale = 100.0 * q[ok].sum() / ref[ok].sum()
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return float(np.clip(quality, 1.0, 100.0))


def blockiness(gray: np.ndarray, max_side: int = 1024, block: int = 8) -> float:
    """Mean |gradient| across ``block`` x ``block`` boundaries over the mean inside blocks (1 = no
    blocking). ``block`` is 8 at full resolution; a JPEG decoded at 1/2 or 1/4 scale (Pillow ``draft``,
    DCT scaling) keeps its block edges every 4 or 2 pixels."""
    h, w = gray.shape
    y0, x0 = max(0, (h - max_side) // 2) // block * block, max(0, (w - max_side) // 2) // block * block
    g = gray[y0:y0 + max_side, x0:x0 + max_side].astype(np.float32)
    if g.shape[0] < 3 * block or g.shape[1] < 3 * block:
        return 1.0
    dx = np.abs(np.diff(g, axis=1))  # dx[:, i] = g[:, i+1] - g[:, i]
    dy = np.abs(np.diff(g, axis=0))
    bx = (np.arange(dx.shape[1]) % block) == block - 1
    by = (np.arange(dy.shape[0]) % block) == block - 1
    boundary = dx[:, bx].mean() + dy[by, :].mean()
    inside = dx[:, ~bx].mean() + dy[~by, :].mean()
    return float((boundary + 1e-3) / (inside + 1e-3))


def analysis_gray(rgb: np.ndarray, long_side: int) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    s = long_side / max(h, w)
    if s < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return gray


def measure(rgb: np.ndarray, data: bytes, cfg: QualityStage, decode_scale: int = 1) -> dict[str, float | None]:
    """All quality scores of one decoded image (``data`` are its file bytes, for the JPEG tables).

    ``decode_scale`` is the JPEG DCT scaling the pixels were decoded with (1, 2 or 4: Pillow ``draft``
    mode at 1/1, 1/2, 1/4): blockiness then looks for block edges every ``8 / decode_scale`` pixels."""
    if decode_scale not in (1, 2, 4):
        raise ValueError(f"decode_scale {decode_scale!r}: allowed 1, 2, 4 (1/8 leaves no block edges to measure)")
    full_gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gray = analysis_gray(rgb, cfg.analysis_long_side)
    lap = cv2.Laplacian(gray, cv2.CV_64F)
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    nz = p[p > 0]
    return {
        "sharpness": round(float(lap.var()), 3),
        "mean": round(float(gray.mean()), 3),
        "dark_frac": round(float(p[:6].sum()), 4),
        "bright_frac": round(float(p[250:].sum()), 4),
        "entropy": round(float(-(nz * np.log2(nz)).sum()), 4),
        "jpeg_quality": (round(q, 1) if (q := jpeg_quality(data)) is not None else None),
        "blockiness": round(blockiness(full_gray, block=8 // decode_scale), 4),
    }


def decide(scores: dict, cfg: QualityStage) -> Decision:
    """Reject on the first failed measure: exposure, compression, information, sharpness."""
    if scores["mean"] < cfg.min_mean or scores["dark_frac"] > cfg.max_dark_frac:
        return False, "underexposed", scores
    if scores["mean"] > cfg.max_mean or scores["bright_frac"] > cfg.max_bright_frac:
        return False, "overexposed", scores
    jq = scores.get("jpeg_quality")
    if (jq is not None and jq < cfg.min_jpeg_quality) or scores["blockiness"] > cfg.max_blockiness:
        return False, "compressed", scores
    if scores["entropy"] < cfg.min_entropy:
        return False, "low_information", scores
    if scores["sharpness"] < cfg.min_sharpness:
        return False, "blurry", scores
    return True, "", scores
