"""Command line of ``report`` and ``verify``: ``add_report_parser(sub)`` / ``add_verify_parser(sub)``
register them in ``python -m curation``; ``main()`` serves ``python -m curation.report``."""
from __future__ import annotations

import argparse
import os
import sys

from humans.shared.cli import HelpFormatter, add_threads, run_cli

REPORT_EPILOG = """\
examples:
  python -m curation report runs/demo --out runs/demo/report
  python -m curation report runs/demo --out /tmp/report --assets files --per-shard 12

RUN_DIR is the output of `python -m curation run` (shards, index.parquet, manifest.json, stages/,
run.json) or a folder of shards with manifest.json. Statistics stream over the parquet files in
record batches (memory stays bounded for millions of rows); only the images shown are read.
Writes OUT/index.html (open it in any browser; no network, no JavaScript) and OUT/stats.json.
"""

VERIFY_EPILOG = """\
examples:
  python -m curation verify runs/demo
  python -m curation verify runs/demo --threads 8 --json verify.json

Checks every shard against manifest.json (size, sha256, sample count, key digest) and
index.parquet (every row's sample present, image sha256), that every image decodes, every .json
parses as sample metadata, and that no key appears twice. Exit status: 0 all good, 1 problems
found (each printed as `SHARD key=KEY: [check] message`), 2 not a shard directory.
"""


def add_report_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write an HTML report and stats.json for a curated run",
                       description="Statistics report of a curated run: stage funnel with rejection reasons, "
                                   "score distributions, sample grids, per-shard table.",
                       epilog=REPORT_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="curated run directory or shard directory")
    p.add_argument("--out", required=True, help="report directory to write (index.html, stats.json, assets/)")
    p.add_argument("--assets", choices=("inline", "files"), default="inline",
                   help="inline: images embedded in index.html as data: URIs (one file to share; default); "
                        "files: images written to OUT/assets/ beside the page")
    p.add_argument("--per-shard", type=int, default=8, help="kept images shown per shard (default 8)")
    p.add_argument("--max-shards", type=int, default=12,
                   help="shards shown in the kept-images grid, evenly spread over the run (default 12)")
    p.add_argument("--examples", type=int, default=6, help="rejected examples shown per reason (default 6)")
    p.add_argument("--clusters", type=int, default=6, help="duplicate clusters shown per dedup stage (default 6)")
    p.add_argument("--source-base", default=None,
                   help="folder that relative pool sources are resolved against (default: the run directory)")
    p.set_defaults(func=cmd_report)
    return p


def add_verify_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("verify", help="check shards against manifest.json and index.parquet",
                       description="Verify curated shards before training on them.",
                       epilog=VERIFY_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("shards", metavar="SHARDS", help="directory holding the shards and manifest.json (a run directory)")
    add_threads(p, "processes checking shards in parallel (default: min(4, CPUs))", old=("--workers",),
                default=min(4, os.cpu_count() or 1))
    p.add_argument("--no-decode", action="store_true",
                   help="skip decoding every image (checksums, counts and json are still checked)")
    p.add_argument("--json", default=None, help="also write the problems and a summary to this JSON file")
    p.add_argument("--max-print", type=int, default=200, help="print at most this many problems (default 200)")
    p.set_defaults(func=cmd_verify)
    return p


def cmd_report(args) -> int:
    from .build import build_report

    try:
        doc = build_report(args.run, args.out, inline=args.assets == "inline", per_shard=args.per_shard,
                           max_shards=args.max_shards, examples=args.examples, clusters=args.clusters,
                           source_base=args.source_base)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = doc["totals"]
    print(f"{t['entered']} entered, {t['kept']} kept in {t['shards']} shards; "
          f"report: {os.path.join(args.out, 'index.html')} (+ stats.json) in {doc['report']['seconds']:.1f} s")
    return 0


def cmd_verify(args) -> int:
    from humans.shared.shards import atomic_write_bytes

    from .verify import problems_json, verify_run

    try:
        problems, summary = verify_run(args.shards, workers=max(1, args.threads), decode=not args.no_decode)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        atomic_write_bytes(args.json, problems_json(problems, summary).encode())
    if problems:
        print(f"FAILED: {len(problems)} problem(s) in {summary['shards']} shards "
              f"({summary['samples']} samples read):")
        for p in problems[: args.max_print]:
            print(f"  {p}")
        if len(problems) > args.max_print:
            print(f"  ... and {len(problems) - args.max_print} more (use --json for all)")
        return 1
    print(f"OK: {summary['shards']} shards, {summary['samples']} samples, {summary['images_decoded']} images "
          f"decoded; sizes, sha256, counts, keys and metadata all match")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m curation.report",
                                     description="Report on and verify curated runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_parser(sub)
    add_verify_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, ())
