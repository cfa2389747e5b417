"""Procedural backgrounds: a wall (gradient, value noise, stripes, checker or tiles, optionally with
2-D clutter) and an optional perspective floor with a soft contact shadow under the feet. Everything
here is background: it never changes a person label."""
from __future__ import annotations

import cv2
import numpy as np


def _rand_rgb(rng: np.random.Generator, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def value_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 4, base: int = 4) -> np.ndarray:
    """Smooth noise in [0, 1] [H, W] from bilinearly upsampled random grids."""
    out = np.zeros((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = base * 2 ** o
        grid = rng.random((n, n)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def wall(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A float32 RGB [H, W, 3] wall texture in [0, 1]."""
    kind = rng.choice(["gradient", "noise", "stripes", "checker", "tiles"], p=[0.25, 0.3, 0.15, 0.15, 0.15])
    c1, c2 = _rand_rgb(rng), _rand_rgb(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = c1.astype(np.float32), c2.astype(np.float32)
    ang = rng.uniform(0, np.pi)
    coord = ((xx * np.float32(np.cos(ang)) + yy * np.float32(np.sin(ang))) / np.float32(max(h, w)))
    if kind == "gradient":
        t = (coord - coord.min()) / max(float(np.ptp(coord)), 1e-6)
    elif kind == "noise":
        t = value_noise(rng, h, w, octaves=int(rng.integers(2, 6)), base=int(rng.integers(2, 8)))
    elif kind == "stripes":
        f = rng.uniform(4, 40)
        t = (np.sin(2 * np.pi * f * coord + rng.uniform(0, 6)) > rng.uniform(-0.5, 0.5)).astype(np.float32)
    elif kind == "checker":
        f = rng.uniform(3, 20)
        c2_ = (xx * np.cos(ang + np.pi / 2) + yy * np.sin(ang + np.pi / 2)) / max(h, w)
        t = ((np.floor(coord * f) + np.floor(c2_ * f)) % 2).astype(np.float32)
    else:
        f = rng.uniform(4, 16)
        u, v = xx / max(h, w) * f, yy / max(h, w) * f
        grout = (np.abs(u - np.round(u)) < 0.05) | (np.abs(v - np.round(v)) < 0.05)
        t = np.where(grout, 1.0, 0.15 * value_noise(rng, h, w, 2, 8)).astype(np.float32)
    img = c1[None, None] + (c2 - c1)[None, None] * t[..., None].astype(np.float32)
    # mild large-scale light falloff
    img *= (0.75 + 0.25 * value_noise(rng, h, w, 1, 2))[..., None]
    return img.astype(np.float32)


def clutter(rng: np.random.Generator, img: np.ndarray, n: int) -> None:
    """Draw n random filled shapes (in place)."""
    h, w, _ = img.shape
    s = max(h, w)
    for _ in range(n):
        col = tuple(float(c) for c in _rand_rgb(rng))
        kind = rng.integers(0, 4)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.uniform(0.02, 0.18) * s)
        if kind == 0:
            cv2.circle(img, (cx, cy), r, col, -1, lineType=cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r), col, -1)
        elif kind == 2:
            pts = (rng.uniform(-1, 1, (int(rng.integers(3, 7)), 2)) * r + [cx, cy]).astype(np.int32)
            cv2.fillPoly(img, [pts], col, lineType=cv2.LINE_AA)
        else:
            cv2.line(img, (cx, cy), (int(cx + rng.uniform(-2, 2) * r), int(cy + rng.uniform(-2, 2) * r)), col,
                     max(1, int(r * 0.15)), lineType=cv2.LINE_AA)


def floor(rng: np.random.Generator, dirs: np.ndarray, up_cam: np.ndarray, floor_point: np.ndarray,
          feet: np.ndarray, light_dir: np.ndarray, light_rgb: np.ndarray, ambient: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Ground plane through ``floor_point`` with normal ``up_cam`` (camera frame). Returns the shaded
    floor colour [H, W, 3] and where the floor is seen [H, W] (bool)."""
    d = dirs.astype(np.float32)
    denom = d @ up_cam.astype(np.float32)
    num = np.float32(floor_point @ up_cam)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / denom
    seen = np.isfinite(t) & (t > 0) & (t < 60)
    t = np.where(seen, t, 0).astype(np.float32)
    e1 = np.cross(up_cam, [0.0, 0.0, 1.0])
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.array([1.0, 0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up_cam, e1)
    u = (d @ e1.astype(np.float32)) * t
    v = (d @ e2.astype(np.float32)) * t
    kind = rng.choice(["checker", "planks", "plain", "noise"])
    c1, c2 = _rand_rgb(rng, 0.1, 0.85).astype(np.float32), _rand_rgb(rng, 0.1, 0.85).astype(np.float32)
    f = np.float32(rng.uniform(0.8, 3.0))
    if kind == "checker":
        tt = ((np.floor(u * f) + np.floor(v * f)) % 2)
    elif kind == "planks":
        tt = 0.5 + 0.5 * np.sin(v * f * 6) * (np.abs(np.sin(v * f * 3)) > 0.1)
    elif kind == "noise":
        tt = 0.5 + 0.25 * (np.sin(u * f * 2.3) + np.sin(v * f * 3.1 + 1.0))
    else:
        tt = np.zeros_like(u)
    col = c1 + (c2 - c1) * tt[..., None].astype(np.float32)
    # soft contact shadow around the feet (plane coordinates) and Lambert shading of the plane
    shadow = np.ones_like(u)
    for fp in feet:
        fu, fv = float(fp @ e1), float(fp @ e2)
        shadow *= 1 - 0.5 * np.exp(-((u - fu) ** 2 + (v - fv) ** 2) / 0.06)
    lam = max(float(up_cam @ light_dir), 0.0)
    col *= (ambient.astype(np.float32) + light_rgb.astype(np.float32) * lam * shadow[..., None])
    haze = np.clip(t / 40.0, 0, 1)[..., None]
    col = col * (1 - haze) + haze * 0.6
    return col.astype(np.float32), seen
