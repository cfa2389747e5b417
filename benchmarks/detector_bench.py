"""Person detectors side by side on the same images: CPU seconds per image (one thread) and how many of
the demo pool's people / person-free scenes each finds at the stage's ``min_score``.

    python benchmarks/detector_bench.py [--pool DIR] [--per-category 12]

Detectors: ``hog`` and ``opencv`` (default install), ``mediapipe`` when the optional extra is installed.
Prints one Markdown table (ratios to ``hog``, measured in the same run).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HUMANS_NO_PROGRESS", "1")


def main(argv: list[str] | None = None) -> int:
    import cv2
    import pyarrow.parquet as pq

    from humans.curation.config import load_pipeline
    from humans.curation.demo_pool import make_demo_pool
    from humans.curation.detectors import build_detector, optional_available
    from humans.shared.imageio import decode_rgb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", help="a labelled demo pool (default: make the small one in a temporary folder)")
    ap.add_argument("--per-category", type=int, default=12, help="images of each of person / no_person")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    pool = Path(args.pool or make_demo_pool(Path(tempfile.mkdtemp()) / "pool", scale="small"))
    labels = pq.read_table(pool / "labels.parquet").to_pandas()
    sets = {cat: [decode_rgb((pool / r.file).read_bytes(), r.key)
                  for r in labels[labels.category == cat].head(args.per_category).itertuples()]
            for cat in ("person", "no_person")}
    kinds = ["hog", "opencv"] + (["mediapipe"] if optional_available("mediapipe") else [])
    rows = []
    for kind in kinds:
        cfg = load_pipeline("humans-test", overrides={"person.detector": kind}).stage("person")
        det = build_detector(cfg)
        det.detect(sets["person"][:1])  # warm-up
        t0 = time.process_time()
        found = {cat: sum(any(p["score"] >= cfg.min_score for p in people) for people in det.detect(ims))
                 for cat, ims in sets.items()}
        n = sum(len(v) for v in sets.values())
        rows.append((kind, det.name, (time.process_time() - t0) / n, found))
    base = rows[0][2]
    print(f"load average at end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)\n")
    print("| detector | CPU s / image | vs hog | people found | person-free scenes flagged |")
    print("|---|---|---|---|---|")
    for kind, name, sec, found in rows:
        print(f"| {kind} ({name}) | {sec:.3f} | {sec / base:.2f}x | {found['person']}/{len(sets['person'])} | "
              f"{found['no_person']}/{len(sets['no_person'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
