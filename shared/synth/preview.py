"""Contact sheet of synthetic items: for each item a row of image, keypoints + skeleton, part colours,
normals as RGB, depth (pointmap z) and albedo, with a header naming the columns."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from humans.shared.atomic import atomic_path
from humans.shared.humans.keypoints import BODY, FACE, HANDS, SKELETON
from humans.shared.humans.parts import PART_COLORS

COLUMNS = ("image", "keypoints", "parts", "normals", "depth", "albedo")


def _fit(img: np.ndarray, tile: int, interp=cv2.INTER_AREA) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    s = tile / max(h, w)
    out = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
    canvas = np.full((tile, tile) + img.shape[2:], 0, dtype=img.dtype)
    canvas[: out.shape[0], : out.shape[1]] = out
    return canvas, s


def _group_color(i: int) -> tuple[int, int, int]:
    if i in BODY:
        return (255, 60, 60)
    if i in HANDS:
        return (60, 220, 60)
    return (80, 160, 255)


def row(item: dict, tile: int = 256) -> np.ndarray:
    """One contact-sheet row from a dict with image, keypoints [308, 3] and optional parts, mask,
    normals, pointmap, albedo."""
    img, s = _fit(item["image"], tile)
    tiles = [img]
    kp_tile = img.copy()
    pil = Image.fromarray(kp_tile)
    draw = ImageDraw.Draw(pil)
    kps = item["keypoints"]
    for a, b in SKELETON:
        if kps[a, 2] > 0 and kps[b, 2] > 0:
            draw.line([(kps[a, 0] * s, kps[a, 1] * s), (kps[b, 0] * s, kps[b, 1] * s)], fill=_group_color(a), width=1)
    for i, (x, y, v) in enumerate(kps):
        if v <= 0:
            continue
        r = 1.5 if i in FACE else 2.5
        if v >= 2:
            draw.ellipse([x * s - r, y * s - r, x * s + r, y * s + r], fill=_group_color(i))
        else:
            draw.ellipse([x * s - r, y * s - r, x * s + r, y * s + r], outline=(255, 255, 255))
    tiles.append(np.asarray(pil))
    blank = np.zeros_like(img)
    if "parts" in item:
        pc = PART_COLORS[item["parts"]]
        mix = (0.35 * item["image"] + 0.65 * pc).astype(np.uint8)
        mix[item["parts"] == 0] = (item["image"][item["parts"] == 0] * 0.35).astype(np.uint8)
        tiles.append(_fit(mix, tile, cv2.INTER_NEAREST)[0])
    else:
        tiles.append(blank)
    mask = item.get("mask")
    if "normals" in item:
        n = item["normals"].astype(np.float32)
        rgb = np.clip((n * np.array([1, -1, -1]) * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
        if mask is not None:
            rgb[~mask] = 0
        tiles.append(_fit(rgb, tile, cv2.INTER_NEAREST)[0])
    else:
        tiles.append(blank)
    if "pointmap" in item:
        z = item["pointmap"][..., 2].astype(np.float32)
        m = z > 0
        d = np.zeros(z.shape + (3,), dtype=np.uint8)
        if m.any():
            lo, hi = np.percentile(z[m], 1), np.percentile(z[m], 99)
            t = np.clip((z - lo) / max(hi - lo, 1e-6), 0, 1)
            d = cv2.applyColorMap((255 * (1 - t)).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1].copy()
            d[~m] = 0
        tiles.append(_fit(d, tile, cv2.INTER_NEAREST)[0])
    else:
        tiles.append(blank)
    tiles.append(_fit(item["albedo"], tile)[0] if "albedo" in item else blank)
    return np.concatenate(tiles, axis=1)


def contact_sheet(items: list[dict], tile: int = 256) -> np.ndarray:
    header = Image.new("RGB", (tile * len(COLUMNS), 18), (30, 30, 30))
    d = ImageDraw.Draw(header)
    for k, name in enumerate(COLUMNS):
        d.text((k * tile + 4, 3), name, fill=(255, 255, 255))
    rows = [np.asarray(header)] + [row(it, tile) for it in items]
    return np.concatenate(rows, axis=0)


def sample_to_item(sample) -> dict:
    """A rendered ``Sample`` as a preview item."""
    return {"image": sample.image, "keypoints": sample.keypoints, "parts": sample.parts, "mask": sample.mask,
            "normals": sample.normals, "pointmap": sample.pointmap, "albedo": sample.albedo}


def write_preview(path: str | Path, items: list[dict], tile: int = 256) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(items, tile)
    with atomic_path(path, tmp=path.with_name(f".{path.name}.tmp")) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return path
