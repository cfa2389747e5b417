"""Check that the demo pool's people are visible to real, pretrained person detectors.

Needs the optional mediapipe extra. Runs MediaPipe's bundled BlazePose (``model_complexity=1``, the model shipped in the wheel) and
OpenCV's pretrained HOG pedestrian detector over chosen items of a labelled pool and reports, per
category, the fraction of images in which each finds somebody. Independent of the pipeline's own
detector code, so it checks the pool, not the pipeline.

    python -m curation.pool.detectability POOL_DIR [--categories person no_person] [--limit 40]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from humans.shared.imageio import ImageError, decode_rgb


def _shrink(rgb: np.ndarray, long_side: int = 640) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    s = long_side / max(h, w)
    if s >= 1.0:
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


class _Detectors:
    def __init__(self):
        import cv2
        import mediapipe as mp  # the optional extra (HUMANS_EXTRAS=mediapipe bash scripts/install.sh)

        self.pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def close(self) -> None:
        self.pose.close()

    def pose_found(self, rgb: np.ndarray) -> bool:
        return self.pose.process(rgb).pose_landmarks is not None

    def hog_found(self, rgb: np.ndarray, min_weight: float = 0.5) -> bool:
        import cv2

        rects, weights = self.hog.detectMultiScale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), winStride=(8, 8),
                                                   padding=(8, 8), scale=1.05)
        return bool(len(rects)) and float(np.max(weights)) >= min_weight


def detection_rates(pool_dir: str | Path, categories: tuple[str, ...] = ("person", "no_person"),
                    limit: int | None = None, hog: bool = True) -> dict[str, dict[str, float]]:
    """{category: {"n": images, "mediapipe_pose": rate, "hog": rate}} over decodable items."""
    import pyarrow.parquet as pq

    root = Path(pool_dir)
    labels = pq.read_table(root / "labels.parquet").to_pylist()
    det = _Detectors()
    out: dict[str, dict[str, float]] = {}
    try:
        for cat in categories:
            rows = [r for r in labels if r["category"] == cat][:limit]
            pose_hits = hog_hits = n = 0
            for r in rows:
                try:
                    rgb = _shrink(decode_rgb((root / r["file"]).read_bytes(), r["key"]))
                except ImageError:
                    continue
                n += 1
                pose_hits += det.pose_found(rgb)
                if hog:
                    hog_hits += det.hog_found(rgb)
            out[cat] = {"n": n, "mediapipe_pose": round(pose_hits / max(n, 1), 3)}
            if hog:
                out[cat]["hog"] = round(hog_hits / max(n, 1), 3)
    finally:
        det.close()
    return out


def main(argv: list[str] | None = None) -> None:
    from humans.shared.runtime import setup_runtime

    setup_runtime()
    ap = argparse.ArgumentParser(description="Rates at which real pretrained detectors (MediaPipe pose, "
                                             "OpenCV HOG) find people in a labelled demo pool, per category.")
    ap.add_argument("pool", help="folder written by `python -m curation demo-pool` (has labels.parquet)")
    ap.add_argument("--categories", nargs="+", default=["person", "no_person", "cmyk", "sixteen_bit", "palette",
                                                        "exif_rotated", "small_person", "truncated_person"],
                    help="label categories to check (default: people, no people, odd modes, framing)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many images per category")
    ap.add_argument("--no-hog", action="store_true", help="skip the (slower) HOG detector")
    args = ap.parse_args(argv)
    print(json.dumps(detection_rates(args.pool, tuple(args.categories), args.limit, hog=not args.no_hog), indent=2))


if __name__ == "__main__":
    main()
