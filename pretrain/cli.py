"""``python -m pretrain``: ``train`` (single process or under torchrun), ``export``, ``models``,
``convert-released`` (released Sapiens2 backbone weights -> our backbone.safetensors)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from humans.shared.cli import HelpFormatter, add_config, add_out, add_set, examples, parse_set, run_cli
from humans.shared.config import ConfigError

# flag -> dotted config key (values parsed by argparse with the given type)
_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--model", "model", str, "backbone name (see `python -m pretrain models`), e.g. sapiens2-0.4b"),
    ("--shards", "data.shards", str, "input shards: a curated run directory (its manifest), a brace "
                                     "pattern 'OUT/humans-{000000..000099}.tar', a glob or a comma list"),
    ("--objective", "objective", str, "mae | cl | mae+cl (the ablation switch; default mae+cl)"),
    ("--lam", "lam", float, "weight of the self-distillation loss: total = MAE + lam * CL"),
    ("--steps", "steps", int, "total optimizer steps of the run"),
    ("--batch-size", "data.batch_size", int, "images per rank per step (global batch = this x ranks)"),
    ("--num-workers", "data.num_workers", int, "decoding worker processes per rank (0: main process)"),
    ("--shuffle-buffer", "data.shuffle_buffer", int, "samples held per worker for shuffling"),
    ("--lr", "optim.lr", float, "peak learning rate (AdamW)"),
    ("--min-lr", "optim.min_lr", float, "final learning rate of the cosine schedule"),
    ("--warmup-steps", "optim.warmup_steps", int, "linear warm-up steps"),
    ("--weight-decay", "optim.weight_decay", float, "AdamW weight decay (matrices only)"),
    ("--grad-clip", "optim.grad_clip", float, "clip the global gradient norm to this (0: off)"),
    ("--global-size", "views.global_size", int, "side of the 2 global views in pixels (multiple of the cell size)"),
    ("--local-size", "views.local_size", int, "side of the local views in pixels (multiple of the cell size)"),
    ("--n-local", "views.n_local", int, "number of local views per image (CL branch only)"),
    ("--mask-ratio", "mae.mask_ratio", float, "fraction of cells hidden from the encoder (MAE)"),
    ("--prototypes", "cl.out_dim", int, "K, the number of prototypes of the self-distillation head"),
    ("--tau", "cl.tau", float, "teacher EMA momentum (start value of the cosine schedule)"),
    ("--tau-schedule", "cl.tau_schedule", str, "constant | cosine (cosine goes to cl.tau_end, 1.0 by default)"),
    ("--precision", "precision", str, "auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32"),
    ("--distributed", "distributed", str, "ddp | fsdp: strategy when launched on several ranks"),
    ("--log-every", "log_every", int, "write a metrics.csv row every N steps"),
    ("--ckpt-every", "ckpt_every", int, "save a checkpoint every N steps (and at the end)"),
    ("--keep-ckpts", "keep_ckpts", int, "keep the N newest checkpoints (0: all)"),
    ("--init", "init", str, "start from these weights with a fresh optimizer and schedule (a second stage, "
                            "e.g. a larger --global-size): a run directory, its ckpt/step_N.pt, or a "
                            "backbone .safetensors from `export`; ignored when --resume finds a checkpoint"),
    ("--seed", "seed", int, "seed of the model init, data order, views and masks"),
    ("--device", "device", str, "auto | cpu | cuda"),
    ("--threads", "threads", int, "torch CPU threads (0: torch default)"),
]


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _config_default(key: str) -> Any:
    """The TrainConfig default of dotted ``key`` (what a flag left out means)."""
    from .config import TrainConfig

    node: Any = TrainConfig().model_dump()
    for part in key.split("."):
        node = node[part]
    return node


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="pretrain a backbone on shards (MAE + self-distillation)",
                       formatter_class=HelpFormatter,
                       epilog=examples("humans-pretrain train --model sapiens2-tiny --shards OUT --steps 1000 "
                                       "--out RUN",
                                       "humans-pretrain train --config train.yaml --set cl.teacher_temp=0.05 "
                                       "--out RUN",
                                       "torchrun --nproc-per-node 8 -m pretrain train --model sapiens2-0.4b "
                                       "--shards OUT --out RUN"),
                       description="Pretrain a backbone. Works alone or under `torchrun --nproc-per-node N "
                                   "-m pretrain train ...` (DDP, or FSDP with --distributed fsdp). Flags override "
                                   "--config; --set KEY=VALUE overrides any config key (dotted, e.g. cl.teacher_temp=0.05).")
    add_out(p, "run directory: config.yaml, metrics.csv, ckpt/step_NNNNNNNN.pt")
    add_config(p, "YAML file of TrainConfig keys (default: RUN/config.yaml when resuming)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --out (model, teacher, optimizer, scheduler, "
                        "step, RNG and data position)")
    for flag, key, typ, help_ in _FLAGS:
        p.add_argument(flag, dest=_dest(flag), type=typ, default=None,
                       help=f"{help_} (default: {_config_default(key)})")
    p.add_argument("--norm-pix-loss", dest="norm_pix_loss", action="store_true", default=None,
                   help="MAE targets normalised per cell (mean/std of each cell's pixels)")
    p.add_argument("--grad-checkpointing", dest="grad_checkpointing", action="store_true", default=None,
                   help="recompute backbone block activations in backward (less memory, ~30%% slower)")
    add_set(p, "cl.teacher_temp=0.05 --set views.n_global=2")


def _train(args: argparse.Namespace) -> int:
    from .config import load_train_config
    from .trainer import NonFiniteLossError, Trainer

    overrides: dict[str, Any] = {}
    for flag, key, _typ, _h in _FLAGS:
        v = getattr(args, _dest(flag))
        if v is not None:
            overrides[key] = v
    if args.norm_pix_loss:
        overrides["mae.norm_pix_loss"] = True
    if args.grad_checkpointing:
        overrides["grad_checkpointing"] = True
    overrides.update(parse_set(args.sets))
    config = args.config
    if config is None and args.resume and (Path(args.out) / "config.yaml").is_file():
        config = Path(args.out) / "config.yaml"
    cfg = load_train_config(config, overrides)
    trainer = Trainer(cfg, args.out, resume=args.resume)
    try:
        summary = trainer.run()
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        trainer.close()
    if trainer.dist.is_main:
        last = ", ".join(f"{k}={v:.4g}" for k, v in summary["last"].items() if k.startswith("loss"))
        print(f"done: step {summary['step']}, {last}, {summary['images_per_s']:.1f} images/s, "
              f"checkpoint {summary['last_checkpoint']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_backbone

    out = export_backbone(args.checkpoint, args.out, args.weights)
    print(out)
    return 0


def _models(args: argparse.Namespace) -> int:
    from humans.shared.backbone import print_model_table

    print_model_table(args.height, args.width)   # shared.backbone.model_table() as a table
    return 0


def _convert_released(args: argparse.Namespace) -> int:
    from humans.shared.backbone import convert_released

    print(convert_released(args.checkpoint, args.out, args.model))
    return 0


def _pictures(args: argparse.Namespace) -> int:
    from .pictures import feature_pca, reconstructions

    out = Path(args.out)
    for run in args.run:
        print(reconstructions(run, args.images, out / f"reconstruction_{Path(run).name}.png", size=args.size))
    if args.backbone:
        pairs = [b.split("=", 1) if "=" in b else (Path(b).stem, b) for b in args.backbone]
        print(feature_pca(dict(pairs), args.images, out / "feature_pca.png"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="humans-pretrain", description=__doc__ + " (also `python -m pretrain`)",
                                     formatter_class=HelpFormatter,
                                     epilog=examples("humans-pretrain train --shards OUT --steps 1000 --out RUN",
                                                     "humans-pretrain export RUN --out backbone.safetensors",
                                                     "humans-pretrain models"))
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    e = sub.add_parser("export", help="checkpoint -> backbone.safetensors (for the heads)",
                       description="Write the backbone of a training checkpoint as safetensors "
                                   "(shared.backbone.save_backbone).",
                       formatter_class=HelpFormatter,
                       epilog=examples("humans-pretrain export RUN --out backbone.safetensors --weights teacher"))
    e.add_argument("checkpoint", help="a step_NNNNNNNN.pt file, RUN/ckpt or RUN (newest checkpoint used)")
    add_out(e, "output .safetensors path")
    e.add_argument("--weights", choices=("auto", "teacher", "student"), default="auto",
                   help="which encoder to export (auto: the EMA teacher when the run has one)")
    m = sub.add_parser("models", help="print the backbone family: parameters, GFLOPs, memory",
                       description="Print shared.backbone.model_table().", formatter_class=HelpFormatter,
                       epilog=examples("humans-pretrain models --height 1024 --width 768"))
    m.add_argument("--height", type=int, default=1024, help="input height for GFLOPs/memory")
    m.add_argument("--width", type=int, default=768, help="input width for GFLOPs/memory")
    c = sub.add_parser("convert-released", help="released Sapiens2 backbone -> backbone.safetensors",
                       description="Convert a released Sapiens2 (1K) backbone checkpoint (.pth or "
                                   ".safetensors) to our layout, strictly (shared.backbone.released).",
                       formatter_class=HelpFormatter,
                       epilog=examples("humans-pretrain convert-released sapiens2_0.4b.pth --out backbone.safetensors"))
    c.add_argument("checkpoint", help="released checkpoint file")
    add_out(c, "output .safetensors path")
    c.add_argument("--model", default=None, help="named config (default: inferred from the weights)")
    pic = sub.add_parser("pictures", help="MAE reconstructions and feature PCA on held-out images",
                         description="Draw what pretraining learned: for each --run (objective with MAE) the "
                                     "masked input, reconstruction and target of every image; for the --backbone "
                                     "checkpoints the first three PCA components of their patch features as RGB, "
                                     "side by side (pretrain.pictures).",
                         formatter_class=HelpFormatter,
                         epilog=examples("humans-pretrain pictures --run RUN --backbone random=r.safetensors "
                                         "--backbone mae=m.safetensors --out PICS a.jpg b.jpg"))
    pic.add_argument("images", nargs="+", help="held-out images (never seen in pretraining)")
    pic.add_argument("--run", action="append", default=[], help="pretraining run directory (repeatable)")
    pic.add_argument("--backbone", action="append", default=[], metavar="[LABEL=]PATH",
                     help="backbone .safetensors for the PCA panel (repeatable)")
    pic.add_argument("--size", type=int, default=64, help="side of the reconstruction input (default 64)")
    add_out(pic, "output folder for the PNGs")
    for name, func in {"train": _train, "export": _export, "models": _models,
                       "convert-released": _convert_released, "pictures": _pictures}.items():
        sub.choices[name].set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, (ConfigError, FileNotFoundError, ValueError))
