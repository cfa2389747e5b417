"""``python -m heads``: train, eval, probe, predict, export (and synth, from shared.synth when present).

Every option is explained by ``--help``; settings can also come from a YAML file (``--config``) whose
keys are those of ``heads.config.HeadConfig`` (command-line options win).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from humans.heads.tasks import TASKS
from humans.heads.tasks import describe as describe_tasks
from humans.shared.cli import HelpFormatter, add_set, examples, run_cli


DEVICES = ("auto", "cpu", "cuda")


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the backbone and head run: cpu, cuda, or auto (cuda when available, else cpu)")


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when a CUDA device is available, else cpu; ``cuda`` without one is an error."""
    import torch

    from humans.shared.config import ConfigError

    if name not in DEVICES:
        raise ConfigError(f"--device {name!r}: allowed {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here (allowed: auto, cpu)")
    return name


def _common_model(p: argparse.ArgumentParser, task_required: bool) -> None:
    p.add_argument("--task", choices=TASKS, required=task_required,
                   help=f"the task: {describe_tasks()}")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a head on a frozen backbone",
                       formatter_class=HelpFormatter, epilog=examples("humans-heads train --task pose --backbone backbone.safetensors --data DATA --out RUN",
                                        "humans-heads train --config head.yaml --set epochs=5 --data DATA --out RUN"),
                       description="Train a head (or a linear probe) for one task on frozen backbone features; "
                                   "writes OUT/head.safetensors (config in its metadata), OUT/metrics.json "
                                   "(held-out metrics) and OUT/history.json (loss per epoch).")
    _common_model(p, task_required=False)
    p.add_argument("--backbone", help="backbone checkpoint (safetensors from shared.backbone.save_backbone)")
    p.add_argument("--data", required=True, help="DATA folder in the humans-dense-v1 layout (docs/heads.md)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--config", help="YAML file of HeadConfig keys (task, layers, size, epochs, lr, loss, ...)")
    p.add_argument("--kind", choices=("head", "linear"), help="full head (default) or linear probe")
    p.add_argument("--layers", help="backbone layers to read, comma-separated, negative from the end "
                                    "(default -1, e.g. 1,3 to mix an early and the last layer)")
    p.add_argument("--size", help="network input H or HxW (default 256x192); pose: the person crop size")
    p.add_argument("--channels", type=int, help="head width (default 256 pose, 64 seg, 128 the other dense heads)")
    p.add_argument("--label-stride", type=int, help="dense tasks: compute the training loss on labels downsampled "
                                                    "by this factor (default 2 = half the input size, as the "
                                                    "seed's decoders; 1 = input size; evaluation and the "
                                                    "exported model are always at full resolution)")
    p.add_argument("--epochs", type=int, help="passes over the training samples (default 30)")
    p.add_argument("--batch-size", type=int, help="samples per step (default 16)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--val-frac", type=float, help="share of DATA images held out for evaluation (default 0.2)")
    p.add_argument("--val-data", help="a separate DATA folder for evaluation (then all of --data trains)")
    p.add_argument("--keypoints", help="keypoint JSON to use instead of DATA/keypoints.json "
                                       "(our 308 layout or COCO-WholeBody, mapped into 308)")
    p.add_argument("--cache-dir", help="folder to keep backbone features in between runs (default: a temporary "
                                       "folder; features are always streamed from disk in batches)")
    p.add_argument("--max-images", type=int, default=None, metavar="N",
                   help="train on the first N images of --data (by name; of its training split without --val-data); "
                        "default all")
    p.add_argument("--no-flip-aug", action="store_true", help="do not add mirrored training copies")
    p.add_argument("--seed", type=int, help="random seed (split, init, order)")
    _device_arg(p)
    add_set(p, "epochs=5 --set weight_decay=0")


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained head",
                       formatter_class=HelpFormatter, epilog=examples("humans-heads eval --checkpoint RUN/head.safetensors --data DATA --split val"),
                       description="Print the task's metrics of RUN/head.safetensors on a DATA folder and "
                                   "write them as JSON.")
    _common_model(p, task_required=False)
    p.add_argument("--checkpoint", required=True, help="RUN/head.safetensors")
    p.add_argument("--data", required=True, help="DATA folder to evaluate on")
    p.add_argument("--out", help="JSON file for the metrics (default: next to the checkpoint, eval.json)")
    p.add_argument("--split", choices=("all", "val", "train"), default="all",
                   help="all images of DATA, or the held-out / training split made at training time")
    p.add_argument("--backbone", help="backbone checkpoint, if it moved since training")
    p.add_argument("--keypoints", help="keypoint JSON instead of DATA/keypoints.json")
    p.add_argument("--cache-dir", help="feature cache folder")
    _device_arg(p)


def _probe_parser(sub) -> None:
    p = sub.add_parser("probe", help="linear probes of several backbones on all five tasks",
                       formatter_class=HelpFormatter, epilog=examples("humans-heads probe --backbone random=a.safetensors --backbone mae=b.safetensors --data DATA"),
                       description="Fit one linear map per task on frozen features of several depths (per token, "
                                   "pixel-shuffled to the labels; no skip, no decoder), solved to convergence "
                                   "(ridge in closed form, segmentation by softmax regression with L-BFGS; "
                                   "regularisation chosen on held-out training images), for each backbone, and print "
                                   "one table of all five tasks' metrics, backbones side by side, plus the "
                                   "mean-prediction baseline.")
    p.add_argument("--backbone", action="append", required=True, metavar="[LABEL=]PATH",
                   help="backbone checkpoint, optionally labelled (repeat: --backbone random=a.safetensors "
                        "--backbone mae=b.safetensors)")
    p.add_argument("--data", required=True, help="DATA folder (split into train / held-out by --val-frac)")
    p.add_argument("--val-data", help="separate DATA folder for evaluation")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--layers", default="auto",
                   help="backbone blocks whose features are concatenated: 'auto' (4 evenly spaced, the last "
                        "included) or a list such as 1,3,5 or -1 (default auto)")
    p.add_argument("--size", default="128x96", help="input H or HxW (default 128x96; keep <= 8 px per token)")
    p.add_argument("--pose-size", default=None,
                   help="input HxW of the pose probe's person crops (default: --size). A crop fills its input, "
                        "so set it to the pretraining view size to show people at the scale the backbone "
                        "learned from (the main job: 64x48 for 64 px views)")
    p.add_argument("--val-frac", type=float, default=0.25, help="held-out share of DATA (default 0.25)")
    p.add_argument("--label-stride", type=int, default=4,
                   help="train the dense probes against labels downsampled by this factor (default 4; "
                        "evaluation is at full resolution)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-baseline", action="store_true", help="leave out the mean-prediction column")
    p.add_argument("--cache-dir", help="folder to keep features in (reruns skip the backbone)")
    p.add_argument("--json", help="write all metrics as JSON here")
    p.add_argument("--write-results", help="write the table as Markdown here (e.g. benchmarks/results/probe.md)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    _device_arg(p)


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="run a head on images and write overlays",
                       formatter_class=HelpFormatter, epilog=examples("humans-heads predict --checkpoint RUN/head.safetensors --out PRED img1.jpg img2.jpg"),
                       description="Write OUT/<image>_<task>.png (overlay: keypoints and skeleton, part colours, "
                                   "normals as RGB, pointmap depth colours, albedo) and OUT/<image>_<task>.npy "
                                   "(raw output at the image size; pose: [308, 3] x, y, score).")
    _common_model(p, task_required=False)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--checkpoint", required=True, help="RUN/head.safetensors")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--bbox", help="pose: person box x,y,w,h in image pixels (default: with --truth the labelled "
                   "person's box, the crop the head was trained on; else the whole image)")
    p.add_argument("--backbone", help="backbone checkpoint, if it moved since training")
    p.add_argument("--min-score", type=float, default=0.2, help="pose: draw keypoints above this score")
    p.add_argument("--truth", metavar="DATA",
                   help="a labelled DATA folder holding the images: also write <image>_<task>_vs_truth.png, "
                        "the prediction beside the ground truth drawn the same way")
    _device_arg(p)


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export backbone + head as one model (ONNX or TorchScript)",
                       formatter_class=HelpFormatter, epilog=examples("humans-heads export --checkpoint RUN/head.safetensors --format onnx --out model.onnx"),
                       description="Write backbone plus head as one model taking [B, 3, H, W] RGB in [0, 1] and "
                                   "returning the task output; the file is run (onnxruntime / torch.jit.load) and "
                                   "compared with the PyTorch model.")
    _common_model(p, task_required=False)
    p.add_argument("--checkpoint", required=True, help="RUN/head.safetensors")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="output format")
    p.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    p.add_argument("--backbone", help="backbone checkpoint, if it moved since training")
    p.add_argument("--atol", type=float, default=1e-3, help="max abs difference allowed against PyTorch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="humans-heads", description="Heads on a frozen backbone: train, eval, "
                                     "probe, predict, export (and synth, the synthetic data generator); also "
                                     "`python -m heads`.", formatter_class=HelpFormatter,
                                     epilog=examples("humans-heads synth --out DATA --count 200",
                                                     "humans-heads train --task seg --backbone b.safetensors "
                                                     "--data DATA --out RUN"))
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _eval_parser(sub)
    _probe_parser(sub)
    _predict_parser(sub)
    _export_parser(sub)
    for name, func in COMMANDS.items():
        sub.choices[name].set_defaults(func=func)
    try:
        from humans.shared.synth.cli import register  # the synthetic data generator, when installed
    except ImportError:
        pass
    else:
        register(sub)
    return parser


def _train_config(a: argparse.Namespace):
    from humans.heads.config import HeadConfig, load_head_config, parse_layers, parse_size
    from humans.shared.config import ConfigError, validate

    base = load_head_config(a.config).model_dump() if a.config else {}
    over = {"task": a.task, "kind": a.kind, "backbone": a.backbone, "channels": a.channels, "epochs": a.epochs,
            "batch_size": a.batch_size, "lr": a.lr, "val_frac": a.val_frac, "seed": a.seed,
            "label_stride": a.label_stride}
    base.update({k: v for k, v in over.items() if v is not None})
    if a.layers:
        base["layers"] = parse_layers(a.layers)
    if a.size:
        base["size"] = parse_size(a.size)
    if a.no_flip_aug:
        base["flip_aug"] = False
    from humans.shared.cli import parse_set, set_dotted

    set_dotted(base, parse_set(a.sets))
    if not base.get("task"):
        raise ConfigError("--task is required (or 'task' in --config)")
    if not base.get("backbone"):
        raise ConfigError("--backbone is required (or 'backbone' in --config)")
    if base["backbone"] and not Path(base["backbone"]).is_file():
        raise ConfigError(f"--backbone {base['backbone']!r}: file not found")
    base["backbone"] = str(Path(base["backbone"]).resolve())
    return validate(HeadConfig, base, source=a.config or "command line")


def _print_metrics(title: str, metrics: dict) -> None:
    print(title)
    for k, v in metrics.items():
        print(f"  {k:<28} {v:.4f}" if isinstance(v, float) else f"  {k:<28} {v}")


def _set_threads(a: argparse.Namespace) -> None:
    if getattr(a, "threads", None):
        import torch
        torch.set_num_threads(a.threads)


def _user_errors() -> tuple[type[BaseException], ...]:
    from humans.heads.data.io import AnnotationError
    from humans.shared.config import ConfigError

    return (AnnotationError, ConfigError, FileNotFoundError, ValueError)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _user_errors, before=_set_threads)


def _cmd_train(a: argparse.Namespace) -> int:
    from humans.heads.train import run_train
    cfg = _train_config(a)
    res = run_train(cfg, a.data, a.out, a.val_data, a.keypoints, a.cache_dir, device=resolve_device(a.device),
                    max_images=a.max_images)
    _print_metrics(f"{cfg.task} ({cfg.kind}) held-out metrics, {res['val_samples']} samples:", res["metrics"])
    print(f"wrote {Path(a.out) / 'head.safetensors'}")
    return 0


def _cmd_eval(a: argparse.Namespace) -> int:
    from humans.heads.evaluate import run_eval
    out = a.out or str(Path(a.checkpoint).with_name("eval.json"))
    res = run_eval(a.checkpoint, a.data, out, a.backbone, a.keypoints, a.cache_dir, a.split,
                   device=resolve_device(a.device))
    if a.task and a.task != res["task"]:
        raise ValueError(f"--task {a.task} but the checkpoint is a {res['task']} head")
    _print_metrics(f"{res['task']} metrics on {res['samples']} samples ({a.split}):", res["metrics"])
    print(f"wrote {out}")
    return 0


def _cmd_probe(a: argparse.Namespace) -> int:
    from humans.heads.config import parse_layers, parse_size
    from humans.heads.probe import parse_backbones, run_probe
    tasks = [t for t in a.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"--tasks: unknown {bad}; allowed {', '.join(TASKS)}")
    layers = "auto" if a.layers.strip() == "auto" else parse_layers(a.layers)
    res = run_probe(parse_backbones(a.backbone), a.data, tasks, layers=layers,
                    size=parse_size(a.size), val_frac=a.val_frac, val_data=a.val_data,
                    pose_size=parse_size(a.pose_size) if a.pose_size else None,
                    label_stride=a.label_stride, seed=a.seed,
                    baseline=not a.no_baseline,
                    cache_dir=a.cache_dir, write_results=a.write_results, device=resolve_device(a.device))
    print(res["table"])
    if a.json:
        from humans.shared.atomic import atomic_write_json

        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(a.json, {k: v for k, v in res.items() if k != "table"}, sort_keys=False)
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from humans.heads.predict import run_predict
    paths = run_predict(a.checkpoint, a.images, a.out, task=a.task, bbox=a.bbox, backbone=a.backbone,
                        min_score=a.min_score, device=resolve_device(a.device), truth_data=a.truth)
    for p in paths:
        print(p)
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from humans.heads.export import run_export
    res = run_export(a.checkpoint, a.out, a.format, task=a.task, backbone=a.backbone, atol=a.atol)
    print(f"wrote {res['path']} ({a.format}); max |diff| vs PyTorch {res['max_abs_diff']:.2e} "
          f"(tolerance {a.atol:g})")
    return 0


COMMANDS = {"train": _cmd_train, "eval": _cmd_eval, "probe": _cmd_probe, "predict": _cmd_predict,
            "export": _cmd_export}  # synth registers its own func (shared.synth.cli.register)
