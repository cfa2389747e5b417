"""A dense head's reach and its no-backbone floor: the same decoder trained on oracle token features.

``heads train`` reads a frozen backbone's tokens. This tool gives the same head (``heads.models.build_head``,
features only), the same loss, schedule, training set and held-out scoring two other kinds of tokens, one per
8-px cell of the input, so a head on a backbone can be read between them:

- ``truth``: the answer summarised per token (seg: the exact class shares of the cell; normal / albedo /
  pointmap: the mean of the cell's labelled values and the share of it that is labelled). What the decoder
  reaches when every token is exactly right: if it is far above a backbone's head, the features, not the
  decoder, hold that head back (above ``tools/sharpness_ceiling.py``'s per-token ceiling, since the decoder
  can also sharpen from neighbouring tokens).
- ``pixels``: each token is its own 8x8 patch of input pixels (192 values), no network in front. A backbone
  whose head does no better than this one has taught the head nothing its input did not already hold.

Writes ``OUT/metrics.json`` in the shape ``heads train`` writes (``metrics``, ``mean_baseline``, ``seconds``),
plus ``oracle``; with ``--pictures N``, ``OUT/<image>_vs_truth.png`` for the last N held-out images: the
prediction beside the ground truth, drawn as ``heads predict --truth`` draws them::

    python tools/head_oracle.py --task seg --features truth --data runs/main/synth_heads \\
        --val-data runs/main/synth --size 128x96 --epochs 36 --out runs/oracle/seg_truth
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from humans.heads.config import HeadConfig, parse_size  # noqa: E402
from humans.heads.data.dataset import DenseData  # noqa: E402
from humans.heads.data.features import FeatureCache  # noqa: E402
from humans.heads.evaluate import evaluate_outputs  # noqa: E402
from humans.heads.models.heads import build_head  # noqa: E402
from humans.heads.prepare import TaskTensors, prepare_task  # noqa: E402
from humans.heads.tasks import REGISTRY, get_task  # noqa: E402
from humans.heads.train import fit, mean_baseline_metrics  # noqa: E402
from humans.shared.atomic import atomic_write_json  # noqa: E402
from humans.shared.humans.parts import NUM_PARTS  # noqa: E402

FEATURES = ("truth", "pixels")
DENSE_TASKS = tuple(t for t in REGISTRY if get_task(t).dense)   # the whole-image tasks (pose: crops)


class PatchPixels(nn.Module):
    """[B, 3, H, W] images in [0, 1] -> [B, 3 * patch**2, H / patch, W / patch]: each token its own pixels
    (centred and scaled to about unit spread), the features of "no backbone"."""

    def __init__(self, patch: int = 8):
        super().__init__()
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        return F.unfold(x - 0.5, p, stride=p).view(b, c * p * p, h // p, w // p) * 4.0


def truth_tokens(tt: TaskTensors, factor: int) -> torch.Tensor:
    """The labels of ``tt`` (at the head's output size) averaged over each ``factor`` x ``factor`` output cell,
    which is one token: seg class shares [N, 29, h, w]; map tasks the mean labelled value and the labelled share
    [N, 4, h, w]."""
    if tt.task == "seg":
        parts = tt.targets["parts"].long()
        onehot = F.one_hot(parts.clamp(max=NUM_PARTS), NUM_PARTS + 1)[..., :NUM_PARTS]  # 255 (ignored): no class
        return F.avg_pool2d(onehot.permute(0, 3, 1, 2).float(), factor).half()
    valid = tt.targets["valid"].float()[:, None]
    values = tt.targets[tt.task].float().permute(0, 3, 1, 2) * valid
    share = F.avg_pool2d(valid, factor)
    mean = F.avg_pool2d(values, factor) / share.clamp_min(1e-6)
    return torch.cat([mean, share], dim=1).half()


def write_pictures(head: nn.Module, vt: TaskTensors, val: DenseData, out_hw: tuple[int, int], out: Path,
                   count: int) -> list[Path]:
    """The last ``count`` held-out images' predictions beside their ground truth (``heads.predict.beside_truth``)."""
    from PIL import Image

    from humans.heads.predict import beside_truth

    spec = get_task(vt.task)
    paths = []
    for i in range(max(0, len(vt) - count), len(vt)):
        key = vt.items[i].key
        img = val.image(key)
        with torch.no_grad():
            y = head(vt.feats[i:i + 1].float(), out_hw, None)
        pred = spec.decode(spec.upsample(y, img.shape[:2])[0])
        pair = beside_truth(spec, val, key, img, pred, spec.overlay(img, pred), 0.2)
        if pair is not None:
            paths.append(out / f"{key}_vs_truth.png")
            Image.fromarray(pair).save(paths[-1])
    return paths


def run(task: str, features: str, data_dir: str, val_dir: str, out: str, size: tuple[int, int], epochs: int,
        seed: int = 0, patch: int = 8, cache_dir: str | None = None, pictures: int = 0) -> dict:
    if task not in DENSE_TASKS:
        raise ValueError(f"--task {task!r}: allowed {', '.join(DENSE_TASKS)}")
    if features not in FEATURES:
        raise ValueError(f"--features {features!r}: allowed {', '.join(FEATURES)}")
    if size[0] % patch or size[1] % patch:
        raise ValueError(f"--size {size[0]}x{size[1]}: must be a multiple of --patch {patch}")
    torch.manual_seed(seed)
    t0 = time.time()
    # no backbone file: the cache key is made of this "config", the image files and the items
    cfg = HeadConfig(task=task, backbone="", backbone_config={"oracle": features, "patch": patch}, size=size,
                     epochs=epochs, seed=seed)
    factor = patch // cfg.label_stride
    if factor < 1 or patch % cfg.label_stride:
        raise ValueError(f"--patch {patch}: must be a multiple of the label stride {cfg.label_stride}")
    data, val = DenseData(data_dir), DenseData(val_dir)
    cache = FeatureCache(cache_dir)
    pixels = PatchPixels(patch)
    train_items, val_items = data.items(task), val.items(task)
    tt = prepare_task(data, train_items, cfg, pixels, cache, flip=cfg.flip_aug)
    vt = prepare_task(val, val_items, cfg, pixels, cache)
    if features == "truth":
        tt.feats, vt.feats = truth_tokens(tt, factor), truth_tokens(vt, factor)
    head = build_head(task, "head", tt.feats.shape[1], patch, image_skip=False, out_hw=cfg.out_hw())
    head.set_prior(get_task(task).prior(tt.targets, cfg))
    history = fit(head, tt, cfg, desc=f"{task} on {features} tokens")
    out_hw = cfg.out_hw()
    metrics = evaluate_outputs(lambda f, img: head(f, out_hw, img), vt, val, cfg)
    result = {"task": task, "kind": "head", "oracle": features, "patch": patch, "size": list(size), "epochs": epochs,
              "seed": seed, "train_samples": len(train_items), "val_samples": len(val_items),
              "metrics": metrics, "mean_baseline": mean_baseline_metrics(tt, vt, cfg, val, "cpu"),
              "loss": {"first": history[0], "last": history[-1]}, "seconds": round(time.time() - t0, 1)}
    Path(out).mkdir(parents=True, exist_ok=True)
    if pictures:
        write_pictures(head, vt, val, out_hw, Path(out), pictures)
    atomic_write_json(Path(out) / "metrics.json", result, sort_keys=False, default=float)
    atomic_write_json(Path(out) / "history.json", {"loss": history}, sort_keys=False, default=float)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, help=f"one of {', '.join(DENSE_TASKS)}")
    ap.add_argument("--features", required=True, help="truth (the answer per token: the decoder's reach) or "
                    "pixels (each token its own patch of pixels: the no-backbone floor)")
    ap.add_argument("--data", required=True, help="labelled DATA folder the head trains on")
    ap.add_argument("--val-data", required=True, help="labelled DATA folder it is scored on")
    ap.add_argument("--out", required=True, help="folder for metrics.json and history.json")
    ap.add_argument("--size", default="128x96", help="network input H x W, as heads train --size (default 128x96)")
    ap.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patch", type=int, default=8, help="pixels per token side (default 8: the study backbones')")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--cache-dir", default=None, help="feature cache folder (default: a temporary one)")
    ap.add_argument("--pictures", type=int, default=0, metavar="N",
                    help="also draw the last N held-out images' predictions beside their ground truth (default 0)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        res = run(args.task, args.features, args.data, args.val_data, args.out, parse_size(args.size), args.epochs,
                  args.seed, args.patch, args.cache_dir, args.pictures)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m, b = res["metrics"], res["mean_baseline"]
    print(f"{args.task} head on {args.features} tokens, {res['train_samples']} training / {res['val_samples']} "
          f"held-out images, {res['seconds']} s")
    for name, _, _ in get_task(args.task).metric_rows:
        if name in m:
            print(f"  {name}: {m[name]:.4f}   (mean prediction {b.get(name, float('nan')):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
