"""Command line of the curation area: ``run``, ``demo-pool``, ``score`` (and ``report``, ``verify``
from ``curation.report.cli``)."""
from __future__ import annotations

import argparse
import json
import sys

from humans.shared.cli import HelpFormatter, add_config, add_out, add_set, add_threads, examples, run_cli

EXIT_NO_SAMPLES = 3  # the run finished but kept nothing (2: bad input, found before any work)

RUN_EPILOG = """\
exit status: 0 done; 2 bad config, pool or checkpoint (found before any work); 3 the run kept 0 samples.

examples:
  humans-curate run --pipeline humans --input POOL --out OUT
  RAY_AUTH_MODE=token RAY_AUTH_TOKEN=TOKEN ray job submit --working-dir . --address http://HEAD:8265 -- \
    python -m humans.curation run --pipeline humans --input s3://bucket/pool --out s3://bucket/curated
  humans-curate run --input POOL --out OUT --detector-weights yolov8n.pt --set person.min_score=0.4
  humans-curate run --input POOL --out OUT --config my_pipelines.yaml --pipeline mine

POOL is a folder of images, a .tar shard / folder of shards / glob / brace pattern
(x-{000000..000009}.tar), or a .parquet/.csv file with a `url` column (optional `key`); POOL and
OUT may be local paths or object-store URIs (s3://bucket/prefix; endpoint and keys from
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). A relative path is made absolute;
under `ray job submit` it is refused (docs/cluster.md).
Rerunning the same command on the same OUT resumes: finished tasks and shards are skipped.
Under `ray job submit` (RAY_ADDRESS set) the job joins that cluster; otherwise a local Ray
instance is started on 127.0.0.1 and stopped at the end.
"""


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="curate a pool into WebDataset shards",
                       description="Run a curation pipeline from pipelines.yaml over a pool: "
                                   "read -> resolution -> quality -> person -> framing -> pHash dedup "
                                   "-> embedding dedup -> shards, index.parquet, manifest.json.",
                       epilog=RUN_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--input", "--pool", dest="pool", required=True,
                   help="the pool: image folder, tar shard(s) (path, folder, glob or brace pattern) or a "
                        ".parquet/.csv list of URLs; a local path or an s3:// URI")
    add_out(p, "run directory (shards, index.parquet, manifest.json, stages/, run.json), a local path or "
               "an s3:// URI; an existing one is resumed", old=("--output",))
    p.add_argument("--pipeline", default="humans", help="pipeline name in the config")
    add_config(p, "your own pipelines YAML file (default: the pipelines.yaml shipped in the curation package)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join ('auto' or host:port); default: RAY_ADDRESS if set (as under "
                        "`ray job submit`), else start a local instance")
    add_threads(p, "CPUs of the local Ray instance (default: all cores; ignored on a cluster)",
                old=("--num-cpus",))
    p.add_argument("--detector-weights", default=None,
                   help="ultralytics YOLO checkpoint (.pt) for the person stage; without it the bundled "
                        "pretrained detector of pipelines.yaml's person.detector is used (auto: MediaPipe "
                        "pose + face when installed, else OpenCV's HOG people detector)")
    p.add_argument("--embedding-backbone", default=None,
                   help="our backbone checkpoint (`humans-pretrain export`, .safetensors) as the embedding "
                        "stage's embedder (the default embedder; `humans` pretrains one before curating)")
    p.add_argument("--embedding-checkpoint", default=None,
                   help="an open_clip state dict (.pt/.safetensors) for the embedding stage instead (sets "
                        "embedding.embedder=open_clip; the architecture is embedding.model)")
    p.add_argument("--embedding-random-init", action="store_true",
                   help="RANDOM embedding weights (no semantics; for tests): every output says RANDOM INIT")
    add_set(p, "quality.min_sharpness=30 --set samples_per_shard=500 --set embedding.resources.concurrency=2")
    p.add_argument("--summary-json", default=None, help="also write the run summary to this file")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    from humans.shared.cli import parse_set

    from .config import load_pipeline
    from .preflight import check_files

    overrides = parse_set(args.sets)
    if args.detector_weights:
        overrides.update({"person.detector": "yolo", "person.weights": args.detector_weights})
    if args.embedding_backbone:
        overrides.update({"embedding.embedder": "backbone", "embedding.backbone": args.embedding_backbone,
                          "embedding.random_init": False})
    if args.embedding_checkpoint:
        overrides.update({"embedding.embedder": "open_clip", "embedding.checkpoint": args.embedding_checkpoint,
                          "embedding.random_init": False})
    if args.embedding_random_init:
        overrides["embedding.random_init"] = True
    # config and named files first, before the pipeline (Arrow, OpenCV, Ray) is even imported
    check_files(load_pipeline(args.pipeline, args.config, overrides))
    from .pipeline import run_pipeline

    summary = run_pipeline(args.pool, args.out, pipeline=args.pipeline, config_path=args.config,
                           ray_address=args.ray_address, num_cpus=args.threads, overrides=overrides)
    _print_summary(summary)
    if args.summary_json:
        from humans.shared.shards import atomic_write_json

        atomic_write_json(args.summary_json, summary)  # a local file of the caller's
    if summary["samples"] == 0:
        print(f"error: the run kept 0 samples: every one of the {summary['stages']['00_read']['in']} pool items "
              f"was rejected (the table above shows at which stage and why; the decisions are in "
              f"{summary['out']}/stages/). Check the pool and the thresholds (--set STAGE.KEY=VALUE).",
              file=sys.stderr)
        return EXIT_NO_SAMPLES
    return 0


def _print_summary(summary: dict) -> None:
    print(f"{'stage':<14}{'in':>8}{'kept':>8}  rejected")
    for stage, c in summary["stages"].items():
        rej = ", ".join(f"{k}={v}" for k, v in sorted(c["rejected"].items()))
        print(f"{stage:<14}{c['in']:>8}{c['out']:>8}  {rej}")
    print(f"{summary['samples']} samples in {summary['shards']} shards under {summary['out']} "
          f"({summary['seconds']['total']:.1f} s)")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo-pool", help="write a labelled demo pool (offline)",
                       description="Write a small labelled pool: people, no people, low-res, blurred, "
                                   "badly exposed, duplicates, broken files and odd modes, with "
                                   "labels.parquet giving each image's ground truth.",
                       epilog=examples("humans-curate demo-pool --out POOL --scale small"),
                       formatter_class=HelpFormatter)
    p.add_argument("out_pos", nargs="?", metavar="OUT", help="output folder, as --out (older spelling)")
    add_out(p, "output folder (images/ and labels.parquet)", required=False)
    p.add_argument("--n-people", type=int, default=None, help="number of clean person images")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--scale", choices=("small", "demo"), default="demo", help="pool size preset")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .demo_pool import make_demo_pool

    out = args.out or args.out_pos
    if not out:
        raise SystemExit("humans-curate demo-pool: error: --out is required")
    kw = {"seed": args.seed, "scale": args.scale}
    if args.n_people is not None:
        kw["n_people"] = args.n_people
    path = make_demo_pool(out, **kw)
    print(path)
    return 0


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="precision/recall of every stage against a labelled pool",
                       description="Score a finished run against the labels.parquet of the demo pool it "
                                   "was run on: per stage precision and recall of the rejections.",
                       epilog=examples("humans-curate score OUT --pool POOL --json OUT/scores.json"),
                       formatter_class=HelpFormatter)
    p.add_argument("run", help="run directory written by `curation run`")
    p.add_argument("--pool", required=True, help="the labelled pool (folder with labels.parquet)")
    p.add_argument("--json", default=None, help="where to write the scores (default: RUN/scores.json)")
    p.set_defaults(func=_cmd_score)


def _cmd_score(args) -> int:
    from .scoring import format_table, score_run

    scores = score_run(args.run, args.pool, json_path=args.json)
    print(format_table(scores))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="humans-curate", formatter_class=HelpFormatter,
                                     description="Curate web image pools into human-centric WebDataset shards "
                                                 "(also `python -m curation`).",
                                     epilog=examples("humans-curate demo-pool --out POOL",
                                                     "humans-curate run --input POOL/images --out OUT",
                                                     "humans-curate report OUT --out REPORT"))
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_demo(sub)
    _add_score(sub)
    try:
        from .report.cli import add_report_parser, add_verify_parser
    except ImportError:  # the report commands are optional in a partial checkout
        pass
    else:
        add_report_parser(sub)
        add_verify_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _user_errors)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors printed as one ``error:`` line (exit 2). The pipeline's own error class counts only
    once the pipeline module is loaded (it cannot be raised before), so a refusal found up front does
    not pay for importing the pipeline (pandas, Arrow, Ray)."""
    from humans.shared.config import ConfigError

    from .raytools import LocationError
    from .sources import PoolSpecError

    errors: list[type[BaseException]] = [ConfigError, PoolSpecError, LocationError, FileNotFoundError]
    pipeline = sys.modules.get(f"{__name__.rpartition('.')[0]}.pipeline")
    if pipeline is not None:
        errors.append(pipeline.PipelineStateError)
    return tuple(errors)
