"""Side-by-side figure of head predictions on held-out images: image | ground truth | one column per head.

Each ``--head LABEL=CHECKPOINT`` is a trained head (``python -m humans.heads train``, ``RUN/head.safetensors``)
of the same task; every head predicts every ``--images`` file, drawn as ``predict`` draws it (seg: part
colours over the image; normals: (n + 1) / 2; albedo: RGB; pointmap: depth), beside the ground truth of
the labelled DATA folder ``--truth``. Where the labels cover part of the image (normals, pointmap), the
prediction is shown on the labelled pixels only, which is what the metrics score. Each column's title
carries the head's held-out primary metric from ``RUN/metrics.json`` when it is there. ``--ceiling S`` adds,
after the truth, the truth reduced to one value per S-px cell and blown back up as a head's output is
(``tools/sharpness_ceiling.py``; seg and normals): how sharp a head whose every cell is right could look.

Example (the decoder comparison of benchmarks/results/heads.md):

    python tools/heads_figure.py --task seg --truth runs/main/synth \\
        --images runs/main/synth/images/000236.jpg runs/main/synth/images/000237.jpg \\
        --head "old head=runs/hx/old/seg/head.safetensors" --head "default=runs/main/heads/seg/head.safetensors" \\
        --out heads_seg.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a source checkout: the repo's parent onto the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from humans.heads.data.dataset import DenseData  # noqa: E402
from humans.heads.data.io import read_image  # noqa: E402
from humans.heads.models.model import load_model  # noqa: E402
from humans.heads.predict import predict_image  # noqa: E402
from humans.heads.probe import PRIMARY  # noqa: E402
from humans.tools.sharpness_ceiling import normal_at_stride, seg_at_stride  # noqa: E402

PANEL_WIDTH = 384   # the figure's pixels per panel across (3 per image pixel for 128-px synthetic humans)


def parse_head(text: str) -> tuple[str, Path]:
    """``"LABEL=PATH"`` -> (label, path); a clear error otherwise."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--head {text!r}: expected LABEL=CHECKPOINT")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"--head {text!r}: no file {path}")
    return label, Path(path)


def primary_metric(checkpoint: Path, task: str, metrics_name: str = "metrics.json") -> str:
    """' (mIoU 0.099)' from the run's ``metrics_name`` beside the checkpoint (``metrics.json``: the held-out
    metrics of training; or the JSON of ``python -m humans.heads eval --out``), '' when absent."""
    metrics = checkpoint.parent / metrics_name
    name = PRIMARY.get(task, ("",))[0]
    if not metrics.is_file() or not name:
        return ""
    value = json.loads(metrics.read_text()).get("metrics", {}).get(name)
    return f"\n{name} {value:.3f}" if isinstance(value, (int, float)) else ""


def truth_at_stride(task: str, truth_map: np.ndarray, valid: np.ndarray | None, stride: int) -> np.ndarray:
    """The truth as one value per ``stride`` px cell, blown back up (seg and normal only)."""
    if task == "seg":
        return seg_at_stride(truth_map, stride)
    if task == "normal":
        valid = np.ones(truth_map.shape[:2], bool) if valid is None else valid
        return np.where(valid[..., None], normal_at_stride(truth_map, valid, stride), truth_map)
    raise ValueError(f"--ceiling: drawn for seg and normal, not {task}")


def panels(task: str, truth: Path, images: list[Path], heads: list[tuple[str, Path]],
           metrics_name: str = "metrics.json", ceiling: int | None = None
           ) -> tuple[list[str], list[list[np.ndarray]]]:
    """Column titles and rows of RGB panels: image, ground truth, [the truth per ``ceiling`` px cell], then
    each head's prediction."""
    data = DenseData(str(truth))
    models = []
    for label, path in heads:
        model = load_model(str(path)).eval()
        if model.spec.name != task:
            raise ValueError(f"--head {label}={path} is a {model.spec.name} head, not {task}")
        models.append(model)
    spec = models[0].spec
    rows = []
    for path in images:
        img = read_image(str(path))
        truth_map, valid = spec.truth_and_valid(data, path.stem)
        if truth_map is None:
            raise ValueError(f"{path}: {truth} has no {task} label for {path.stem}")
        row = [img, spec.overlay(img, truth_map, 0.2)]
        if ceiling:
            row.append(spec.overlay(img, truth_at_stride(task, truth_map, valid, ceiling), 0.2))
        for model in models:
            pred = predict_image(model, img)
            if valid is not None and not valid.all() and pred.shape == truth_map.shape:
                pred = np.where(valid[..., None], pred, truth_map)   # scored pixels only, as the metrics
            row.append(spec.overlay(img, pred, 0.2))
        rows.append(row)
    titles = (["image", "ground truth"] + ([f"truth per {ceiling}-px cell\n(sharpness ceiling)"] if ceiling else [])
              + [label + primary_metric(p, task, metrics_name) for label, p in heads])
    return titles, rows


def draw(titles: list[str], rows: list[list[np.ndarray]], out: Path, caption: str = "") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = rows[0][0].shape[:2]
    scale = PANEL_WIDTH / w
    # constrained layout places the caption above two-line column titles (tight_layout overlapped them)
    fig, axes = plt.subplots(len(rows), len(titles), squeeze=False, layout="constrained",
                             figsize=(len(titles) * w * scale / 100, len(rows) * h * scale / 100 + 0.6))
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    if caption:
        fig.suptitle(caption, fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="heads_figure", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, help="the heads' task: pose is not drawn here (use predict)")
    ap.add_argument("--truth", required=True, type=Path, help="labelled DATA folder holding the images")
    ap.add_argument("--images", required=True, nargs="+", type=Path, help="held-out image files of --truth")
    ap.add_argument("--head", dest="heads", required=True, action="append", type=parse_head,
                    metavar="LABEL=CHECKPOINT", help="a trained head (repeat: one column each)")
    ap.add_argument("--caption", default="", help="a line above the figure")
    ap.add_argument("--metrics", default="metrics.json",
                    help="JSON beside each checkpoint whose primary metric goes in the column title (default "
                         "metrics.json: training's held-out metrics; e.g. the --out name of `humans.heads eval` "
                         "run on --truth, when heads were trained on other data)")
    ap.add_argument("--ceiling", type=int, default=None, metavar="S",
                    help="seg and normal: add the truth reduced to one value per S-px cell (e.g. 8, a token at "
                         "the heads' input scale) and blown back up, what a head right in every cell would draw")
    ap.add_argument("--out", required=True, type=Path, help="PNG to write")
    args = ap.parse_args(argv)
    if args.task == "pose":
        ap.error("--task pose: pose predictions are drawn by `python -m humans.heads predict --truth`")
    if args.ceiling is not None and (args.ceiling < 1 or args.task not in ("seg", "normal")):
        ap.error(f"--ceiling {args.ceiling}: allowed a positive cell size, with --task seg or normal")
    titles, rows = panels(args.task, args.truth, args.images, args.heads, args.metrics, args.ceiling)
    print(draw(titles, rows, args.out, args.caption))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
