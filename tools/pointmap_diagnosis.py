"""Diagnose the pointmap task: what the mean-shape baseline gets wrong, and what a probe must know to beat it.

A pointmap pixel is its camera ray times its depth: ``p = z * (x/z, y/z, 1)``. The metric (``PointmapMetric``)
aligns each prediction to its target by one least-squares scale, so the person's distance drops out; what
remains is (a) the rays, set by the camera's field of view, which varies per synthetic image and which one
image shows only through perspective, and (b) the relief: each pixel's depth relative to the rest of the body.
This tool scores, on the held-out split the probe uses (``DenseData.split``), predictions that know
some of those parts exactly and nothing else:

- ``mean shape``: how the mean-prediction baseline is built (the per-pixel mean of training pointmaps, each
  over its RMS length ``pointmap_scale``, as ``PointmapTask.mean_map`` without its shrink; the probe's
  fitted baseline, a ridge intercept on 8 px tokens, scores about 0.002 worse);
- ``flat, mean rays``: a flat person facing the camera, seen through the training set's mean rays;
- ``flat, true rays``: the same flat person through the image's own rays (the camera known exactly, no relief);
- ``true rays, mean relief``: the image's own rays and the per-pixel mean of training depths relative to
  each person's mean depth;
- ``truth at token resolution``: the target sampled once per ``--token`` px cell (the probe's grid) and
  blown back up: the ceiling of a probe whose token carries its cell's exact point.

Used for study.md's pointmap section (issue #12)::

    python tools/pointmap_diagnosis.py --data runs/main/synth --json pointmap_diag.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from humans.heads.data.dataset import DenseData  # noqa: E402
from humans.heads.losses import pointmap_scale  # noqa: E402
from humans.heads.metrics import PointmapMetric  # noqa: E402


def rays(p: np.ndarray) -> np.ndarray:
    """Each pixel's ray (x/z, y/z, 1) from its point; zeros where z is 0 (nothing labelled)."""
    z = p[..., 2:3]
    return np.where(z > 0, p / np.where(z > 0, z, 1.0), 0.0)


def masked_mean(maps: list[np.ndarray], valids: list[np.ndarray]) -> np.ndarray:
    s = sum(m * v[..., None] for m, v in zip(maps, valids))
    n = sum(v.astype(np.float64) for v in valids)
    return s / np.maximum(n, 1.0)[..., None]


def token_resolution(p: np.ndarray, v: np.ndarray, token: int) -> np.ndarray:
    """``p`` sampled at the centre of each ``token`` x ``token`` cell (a valid pixel where there is one)
    and repeated over the cell."""
    out = np.zeros_like(p)
    h, w = v.shape
    for y0 in range(0, h, token):
        for x0 in range(0, w, token):
            cell_v = v[y0:y0 + token, x0:x0 + token]
            if not cell_v.any():
                continue
            ys, xs = np.nonzero(cell_v)
            i = np.argmin((ys - cell_v.shape[0] / 2) ** 2 + (xs - cell_v.shape[1] / 2) ** 2)
            out[y0:y0 + token, x0:x0 + token] = p[y0 + ys[i], x0 + xs[i]]
    return out


def diagnose(data_dir: str, val_frac: float = 0.25, seed: int = 0, token: int = 8) -> dict:
    data = DenseData(data_dir)
    train_keys, val_keys = data.split(val_frac, seed)

    def load(keys):
        out = []
        for item in data.items("pointmap", keys):
            t = data.load_target(item, "pointmap")
            out.append((t["pointmap"].astype(np.float64), np.asarray(t["valid"], bool)))
        return out

    train, held = load(train_keys), load(val_keys)
    if not train or not held:
        raise SystemExit(f"{data_dir}: no labelled pointmaps in the train or held-out split")
    sizes = {p.shape for p, _ in train + held}
    if len(sizes) != 1:
        raise SystemExit(f"{data_dir}: pointmaps of several sizes {sorted(sizes)}: this tool needs one")

    def rms(p, v):  # the scale the probe, the baseline and the heads divide by
        import torch

        return float(pointmap_scale(torch.from_numpy(p).permute(2, 0, 1)[None], torch.from_numpy(v)[None])[0])

    def zmean(p, v):
        return float(p[v][:, 2].mean())

    mean_shape = masked_mean([p / rms(p, v) for p, v in train], [v for _, v in train])
    mean_rays = masked_mean([rays(p) for p, v in train], [v for _, v in train])
    mean_rel_depth = masked_mean([p[..., 2:3] / zmean(p, v) for p, v in train], [v for _, v in train])[..., :1]

    preds = {
        "mean shape (the baseline's construction)": lambda p, v: mean_shape,
        "flat, mean rays": lambda p, v: mean_rays,
        "flat, true rays (camera known, no relief)": lambda p, v: rays(p),
        "true rays, mean relief": lambda p, v: rays(p) * mean_rel_depth,
        f"truth at token resolution ({token} px)": lambda p, v: token_resolution(p, v, token),
        "truth": lambda p, v: p,
    }
    scores = {}
    for name, fn in preds.items():
        m = PointmapMetric()
        for p, v in held:
            m.update(fn(p, v), p, v)
        scores[name] = round(m.compute()["si_error"], 4)
    rel = [float(np.std(p[v][:, 2]) / zmean(p, v)) for p, v in held]
    return {"data": str(data_dir), "train": len(train), "held_out": len(held), "si_error": scores,
            "relief_std_over_depth_median": round(float(np.median(rel)), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--data", required=True, help="labelled synthetic humans (humans-synth output, e.g. RUN/synth)")
    ap.add_argument("--val-frac", type=float, default=0.25, help="held-out share, as humans-heads probe")
    ap.add_argument("--seed", type=int, default=0, help="split seed, as humans-heads probe")
    ap.add_argument("--token", type=int, default=8, help="token cell in label pixels (the probe's grid)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    res = diagnose(args.data, args.val_frac, args.seed, args.token)
    print(f"{res['held_out']} held-out images ({res['train']} for the means); si-error, lower is better:")
    for name, v in res["si_error"].items():
        print(f"  {name:45s} {v:.4f}")
    print(f"  per-image depth spread over the body / its mean depth (median): {res['relief_std_over_depth_median']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
