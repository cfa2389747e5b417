"""``humans-synth`` (also ``humans-heads synth``): write a synthetic labelled data set and/or a preview contact sheet.

``register(subparsers)`` adds the ``synth`` subcommand (used by heads/cli.py); ``main(argv)`` runs it
standalone (``python -m shared.synth``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from humans.shared.synth import LABELS
from humans.shared.cli import HelpFormatter, examples, add_threads

DESCRIPTION = ("Generate synthetic labelled humans (image, 308 keypoints, 29-class parts, mask, normals, "
               "pointmap, albedo) in the humans-dense-v1 format, and/or a PNG contact sheet.")


EPILOG = examples("humans-synth --out DATA --count 2000 --size 512 --preview",
                  "humans-synth --out UNLABELLED --count 4000 --size 128 --seed 1000 --images-only")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="output DATA folder (created; rerunning resumes: complete items are kept, "
                                 "meta.json is written last). Without --out, --preview renders in memory")
    p.add_argument("--count", type=int, default=2000, help="number of images (default 2000)")
    p.add_argument("--size", default="512", help="image size: N for NxN or WxH such as 640x480 (default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed; item i depends only on (seed, i, size)")
    add_threads(p, "worker processes (default: min(2, CPUs)); output does not depend on it", old=("--workers",),
                default=min(2, os.cpu_count() or 1))
    p.add_argument("--labels", default=",".join(LABELS),
                   help=f"comma-separated labels to write besides images (default all: {','.join(LABELS)})")
    p.add_argument("--jpeg-quality", type=int, default=92, help="JPEG quality of the images (default 92)")
    p.add_argument("--images-only", action="store_true",
                   help="write unlabelled images as WebDataset shards for pretraining (no labels at all; a "
                        "manifest that `humans-pretrain train --shards` reads); use another --seed than the "
                        "labelled probe data")
    p.add_argument("--per-shard", type=int, default=250, help="images per shard with --images-only (default 250)")
    p.add_argument("--preview", action="store_true",
                   help="write a PNG contact sheet (image, keypoints+skeleton, parts, normals, depth, albedo): "
                        "OUT/preview.png from the written items, or --preview-path when there is no --out")
    p.add_argument("--preview-count", type=int, default=8, help="rows of the contact sheet (default 8)")
    p.add_argument("--preview-path", default=None,
                   help="contact sheet path (default OUT/preview.png, or ./synth_preview.png without --out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(a: argparse.Namespace) -> int:
    from humans.shared.runtime import setup_runtime

    setup_runtime()
    from humans.shared.synth.preview import sample_to_item, write_preview
    from humans.shared.synth.render import generate
    from humans.shared.synth.scene import parse_size
    from humans.shared.synth.writer import read_item, write_dataset

    try:
        size = parse_size(a.size)
    except ValueError as exc:
        print(f"error: --size {a.size!r}: {exc}; use N or WxH", file=sys.stderr)
        return 2
    labels = [s.strip() for s in a.labels.split(",") if s.strip()]
    bad = sorted(set(labels) - set(LABELS))
    if bad:
        print(f"error: --labels: unknown {bad}; allowed {list(LABELS)}", file=sys.stderr)
        return 2
    if a.count < 0 or a.threads < 1 or a.preview_count < 1 or not 1 <= a.jpeg_quality <= 100:
        print("error: --count must be >= 0, --threads >= 1, --preview-count >= 1, --jpeg-quality in 1..100",
              file=sys.stderr)
        return 2
    if not a.out and not a.preview:
        print("error: give --out DATA (write a data set) and/or --preview (contact sheet)", file=sys.stderr)
        return 2
    if a.out and a.images_only:
        from humans.shared.synth.shards import write_image_shards

        try:
            res = write_image_shards(a.out, a.count, size, a.seed, a.per_shard, a.threads, a.jpeg_quality,
                                     show_progress=not a.no_progress)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {res['generated']} unlabelled images ({res['skipped']} already in complete shards) in "
              f"{res['shards']} shards to {res['out']} in {res['seconds']:.1f} s")
        return 0
    if a.out:
        try:
            res = write_dataset(a.out, a.count, size, a.seed, a.threads, labels, a.jpeg_quality,
                                progress=not a.no_progress)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        rate = f", {res['images_per_s']:.2f} images/s" if res["images_per_s"] else ""
        print(f"wrote {res['generated']} items ({res['skipped']} already complete) to {res['out']} in "
              f"{res['seconds']:.1f} s{rate}")
        if a.preview:
            n = min(a.preview_count, a.count)
            items = [read_item(a.out, i) for i in range(n)]
            path = write_preview(a.preview_path or Path(a.out) / "preview.png", items)
            print(f"wrote preview {path}")
    else:
        items = [sample_to_item(generate(a.seed, i, size)) for i in range(a.preview_count)]
        path = write_preview(a.preview_path or "synth_preview.png", items)
        print(f"wrote preview {path}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand to ``python -m heads``."""
    p = subparsers.add_parser("synth", help="generate synthetic labelled humans", description=DESCRIPTION,
                              formatter_class=HelpFormatter, epilog=EPILOG)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="humans-synth", description=DESCRIPTION,
                                formatter_class=HelpFormatter, epilog=EPILOG)
    add_arguments(p)
    return run(p.parse_args(argv))
