"""Decode once at reduced size: Pillow ``draft`` (JPEG DCT scaling) against a full decode, and the
per-image stages on the reduced copy, side by side in one run.

    python benchmarks/decode_bench.py [--scale small] [--detector-images 24]

Two image sets from the labelled demo pool's JPEGs that pass stage 1: the pool as it is (about
512-830 px, where draft mode has little to skip) and the same images upscaled to a 2000 px long side
and re-encoded at quality 90 ("web-size", the size of a typical web photo). For each set: images/s of
a full decode, of a draft decode to at least the detector's 640 px (then resized to 640), and of
stage 2 (quality) and stage 3 (the default detector) on what the draft decode gives, each as a
multiple of the full decode rate. Also prints whether blockiness still separates the pool's
heavily compressed JPEGs from the others when measured on the draft decode. Last, the pipeline's own
stages 0-2 (``curation.work.filter_task``: read, header, decode, quality, the stored bytes and the
pHash / detector copy) with its reduced decode (``decode_rgb_reduced``) against the same task forced to
decode in full, with their decisions compared. One thread.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HUMANS_NO_PROGRESS", "1")


def main(argv: list[str] | None = None) -> int:
    import cv2
    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    from humans.curation.config import load_pipeline
    from humans.curation.demo_pool import make_demo_pool
    from humans.curation.detectors import build_detector, detector_long_side
    from humans.curation.stages import quality, resolution
    from humans.shared.imageio import ImageError, read_header

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", help="a labelled demo pool (default: make one in a temporary folder)")
    ap.add_argument("--scale", default="small", choices=("small", "demo"))
    ap.add_argument("--detector-images", type=int, default=24, help="images timed through the detector")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    cfg = load_pipeline("humans")
    qcfg, pcfg = cfg.stage("quality"), cfg.stage("person")
    side = detector_long_side(pcfg)
    pool = Path(args.pool or make_demo_pool(Path(tempfile.mkdtemp()) / "pool", scale=args.scale))
    labels = pq.read_table(pool / "labels.parquet").to_pandas()
    blobs = []
    for r in labels.itertuples():
        b = (pool / r.file).read_bytes()
        if b[:3] != b"\xff\xd8\xff":
            continue
        try:
            if not resolution.decide(read_header(b), cfg.stage("resolution"))[0]:
                continue
            Image.open(io.BytesIO(b)).convert("RGB")
        except (ImageError, OSError, ValueError):
            continue
        blobs.append((r.category, b))

    def upscale(category: str, b: bytes) -> bytes:
        rgb = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
        h, w = rgb.shape[:2]
        s = 2000 / max(h, w)
        big = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
        buf = io.BytesIO()  # the pool's heavily compressed images stay heavily compressed at this size
        Image.fromarray(big).save(buf, format="JPEG", quality=8 if category == "heavy_compression" else 90)
        return buf.getvalue()

    sets = {"pool": blobs, "web-size (2000 px)": [(c, upscale(c, b)) for c, b in blobs]}

    def full(b: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))

    def draft(b: bytes) -> tuple[np.ndarray, int]:
        im = Image.open(io.BytesIO(b))
        w0 = im.size[0]
        im.draft("RGB", (side, side))  # the smallest DCT scale that keeps both sides >= side
        rgb = np.asarray(im.convert("RGB"))
        return rgb, max(1, round(w0 / rgb.shape[1]))

    def small(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = min(1.0, side / max(h, w))
        return rgb if s >= 1 else cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)

    def rate(fn, items) -> tuple[float, list]:
        t = time.process_time()
        out = [fn(x) for x in items]
        return len(items) / max(time.process_time() - t, 1e-9), out

    def rate_decode(fn, items) -> tuple[float, list]:
        """A decode's rate with each output dropped at once (kept, hundreds of 2000 px decodes are gigabytes
        of fresh memory and faulting it in halved the measured rate), then its outputs for the next steps."""
        t = time.process_time()
        for x in items:
            fn(x)
        return len(items) / max(time.process_time() - t, 1e-9), [fn(x) for x in items]

    from humans.curation import work
    from humans.curation.sources import PoolTask

    def pipeline_filter(data: list[bytes]) -> tuple[float, float, str]:
        """filter_task over ``data`` with its reduced decode, then forced to decode in full."""
        folder = Path(tempfile.mkdtemp())
        for i, b in enumerate(data):
            (folder / f"{i:04d}.jpg").write_bytes(b)
        task = PoolTask("files-000000-bench", "files", str(folder),
                        tuple((f"{i:04d}.jpg", f"{i:04d}") for i in range(len(data))))
        r_red, red = rate(lambda t: work.filter_task(t, cfg, 0), [task])
        keep = work._keeps_original_jpeg
        work._keeps_original_jpeg = lambda header, c: False  # the path before the reduced decode
        try:
            r_full, fullp = rate(lambda t: work.filter_task(t, cfg, 0), [task])
        finally:
            work._keeps_original_jpeg = keep
        decisions = [[(r["key"], r["kept"], r["reason"]) for r in out[0]["rows"]["quality"]] for out in (red, fullp)]
        kept_same = [a[1] for a in decisions[0]] == [b[1] for b in decisions[1]]
        reasons = sum(a[2] != b[2] for a, b in zip(*decisions))
        for a, b in zip(*decisions):
            if a != b:
                print(f"  filter_task decision differs: reduced {a} / full {b}")
        verdict = ("keep/reject identical" if kept_same else "keep/reject DIFFER") + \
            (f"; {reasons} rejection reason(s) differ" if reasons else "")
        return r_red * len(data), r_full * len(data), verdict

    filter_rates: dict[str, tuple[float, float, str]] = {}
    det = build_detector(pcfg)
    print(f"detector {det.name}; {len(blobs)} JPEGs; load average {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} cores); CPU time of one thread\n")
    print("| set | step | images/s | x full decode |")
    print("|---|---|---:|---:|")
    for name, items in sets.items():
        data = [b for _, b in items]
        r_full, fulls = rate_decode(full, data)
        r_draft, drafts = rate_decode(lambda b: (lambda d: (small(d[0]), d[0], d[1]))(draft(b)), data)
        scales = sorted({s for _, _, s in drafts})
        r_q_full, q_full = rate(lambda x: quality.measure(x[0], x[1], qcfg), list(zip(fulls, data)))
        r_q_draft, q_draft = rate(lambda x: quality.measure(x[0][1], x[1], qcfg, decode_scale=min(x[0][2], 4)),
                                  list(zip(drafts, data)))
        dets = [d[0] for d in drafts[:args.detector_images]]
        det.detect(dets[:1])
        r_det, _ = rate(lambda im: det.detect([im]), dets)
        rows = [("full decode (Pillow)", r_full), (f"draft decode to >= {side} px (DCT scales {scales}) + resize to {side}", r_draft),
                ("stage 2 quality on the full decode", r_q_full), ("stage 2 quality on the draft decode", r_q_draft),
                (f"stage 3 detector on the {side} px copy ({len(dets)} images)", r_det)]
        for step, r in rows:
            print(f"| {name} | {step} | {r:.1f} | {r / r_full:.2f} |")
        path = 1 / r_draft + 1 / r_q_draft + 1 / r_det
        print(f"| {name} | draft decode + quality + detector, per image | {1 / path:.2f} | {(1 / path) / r_full:.3f} |")
        comp = [i for i, (c, _) in enumerate(items) if c == "heavy_compression"]
        good = [i for i, (c, _) in enumerate(items) if c == "person"]
        for label, qs in (("full", q_full), ("draft", q_draft)):
            flag = [i for i, q in enumerate(qs) if not quality.decide(q, qcfg)[0] and
                    quality.decide(q, qcfg)[1] == "compressed"]
            print(f"  '{name}' quality on the {label} decode: rejected as compressed: "
                  f"{sum(i in flag for i in comp)}/{len(comp)} heavy_compression, "
                  f"{sum(i in flag for i in good)}/{len(good)} good person images")
        filter_rates[name] = pipeline_filter(data)
    print("\n| set | the pipeline's stages 0-2 (filter_task) | images/s | x full decode | quality decisions |")
    print("|---|---|---:|---:|---|")
    for name, (r_red, r_fullpath, verdict) in filter_rates.items():
        r_full = rate_decode(full, [b for _, b in sets[name]])[0]
        print(f"| {name} | forced full decode | {r_fullpath:.1f} | {r_fullpath / r_full:.2f} | |")
        print(f"| {name} | reduced decode (the default) | {r_red:.1f} | {r_red / r_full:.2f} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
