"""Small hand-written datasets in the labelled dense format, for reader tests (no generator needed)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from humans.shared.humans.keypoints import NUM_KEYPOINTS
from humans.shared.humans.parts import PART_COLORS


def write_tiny_dataset(root: Path, n: int = 2, h: int = 40, w: int = 32, seed: int = 0) -> Path:
    """``n`` images of ``h`` x ``w`` with every label: a rectangle "person" in the middle."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for d in ("images", "parts", "masks", "normals", "pointmap", "albedo"):
        (root / d).mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        key = f"{i:06d}"
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"{key}.jpg")
        mask = np.zeros((h, w), bool)
        mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
        parts = np.zeros((h, w), np.uint8)
        parts[mask] = 3
        parts[h // 4: h // 2, w // 4: w // 2] = 4  # left upper arm in the image's left half
        p = Image.fromarray(parts, mode="P")
        p.putpalette(PART_COLORS.ravel().tolist())
        p.save(root / "parts" / f"{key}.png")
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(root / "masks" / f"{key}.png")
        normals = np.zeros((h, w, 3), np.float16)
        v = rng.normal(size=3)
        normals[mask] = v / np.linalg.norm(v)
        np.save(root / "normals" / f"{key}.npy", normals)
        pm = np.zeros((h, w, 3), np.float32)
        ys, xs = np.nonzero(mask)
        pm[ys, xs] = np.stack([(xs - w / 2) / w, (ys - h / 2) / w, np.full_like(xs, 3.0, dtype=float)], 1)
        np.save(root / "pointmap" / f"{key}.npy", pm)
        alb = img.copy()
        alb[mask] = [200, 120, 90]
        Image.fromarray(alb).save(root / "albedo" / f"{key}.png")
        kp = np.zeros((NUM_KEYPOINTS, 3))
        kp[:25, 0] = rng.uniform(w / 4, 3 * w / 4, 25)
        kp[:25, 1] = rng.uniform(h / 4, 3 * h / 4, 25)
        kp[:25, 2] = 2
        images.append({"id": i, "file_name": f"{key}.jpg", "width": w, "height": h})
        anns.append({"id": i + 1, "image_id": i, "category_id": 1, "keypoints": kp.ravel().tolist(),
                     "num_keypoints": 25, "bbox": [w / 4, h / 4, w / 2, h / 2], "area": w * h / 4})
    (root / "keypoints.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                     "categories": [{"id": 1, "name": "person"}]}))
    (root / "meta.json").write_text(json.dumps({"format": "humans-dense-v1", "count": n, "keypoints": 308,
                                                "parts": 29, "pointmap_frame": "camera, focal-normalised"}))
    return root
