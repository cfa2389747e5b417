"""Diagnose the pose linear probe of a main-job run: PCK@0.1 per keypoint group and an oracle.

For the backbones of a finished run (``RUN/backbones/<arm>.safetensors``) and its labelled synthetic
humans (``RUN/synth``), fit the pose probe exactly as ``humans-heads probe`` does (same split, same
ridge solver, features of four evenly spaced blocks) at a chosen crop size, heatmap stride and sigma,
and report PCK@0.1 over all keypoints and per group (25 body, 40 hand, 243 face points: the face dominates
the overall figure), beside:

- the mean baseline (the same probe without features);
- ``oracle_parts``: the probe fitted on features that know body parts exactly (the fraction of each of
  the 29 part classes inside every token, from the ground-truth part map warped into the crop), the
  ceiling a backbone with perfect part semantics would reach through this linear probe;
- ``arm+oracle``: the first arm's features and the oracle's together.

Used for study.md's "The pose probe at the pretraining scale" (issue #12)::

    python tools/pose_probe_diagnosis.py --run runs/main --size 128x96
    python tools/pose_probe_diagnosis.py --run runs/main --size 64x48 --json pose_64.json
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPS = ("PCK@0.1", "PCK@0.1/body", "PCK@0.1/hands", "PCK@0.1/face")


def pck_by_group(probe, tt, data, cfg) -> dict[str, float]:
    """PCK@0.1 overall and per keypoint group of ``probe`` on ``tt``, through the probe's own
    evaluation (``heads.evaluate.evaluate_outputs``: decoded, mapped back to the image, PoseMetric)."""
    from humans.heads.evaluate import evaluate_outputs

    m = evaluate_outputs(lambda f, img: probe(f.float(), cfg.heatmap_hw), tt, data, cfg)
    return {g.split("/")[-1] if "/" in g else "all": round(float(m[g]), 4) for g in GROUPS}


def part_fractions(data, items, tt, size: tuple[int, int], token: int) -> torch.Tensor:
    """[N, 29, H/token, W/token]: the share of each part class in every token of each person crop."""
    from humans.heads.data.io import read_parts
    from humans.shared.humans.parts import NUM_PARTS

    out = []
    for i, it in enumerate(items):
        parts = read_parts(data.label_path("seg", it.key), NUM_PARTS)
        crop = cv2.warpAffine(parts, tt.extra["affine"][i], (size[1], size[0]), flags=cv2.INTER_NEAREST,
                              borderValue=0)
        onehot = torch.from_numpy(np.eye(NUM_PARTS, dtype=np.float32)[crop]).permute(2, 0, 1)[None]
        out.append(torch.nn.functional.avg_pool2d(onehot, token)[0])
    return torch.stack(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished main-job output folder")
    ap.add_argument("--arms", default="random_seed0,mae_seed0,cl_seed0,mae_cl_seed0",
                    help="backbone names under RUN/backbones (comma-separated)")
    ap.add_argument("--size", default="128x96", help="person crop HxW (default 128x96)")
    ap.add_argument("--stride", type=int, default=4, help="heatmap stride in input pixels (default 4)")
    ap.add_argument("--sigma", type=float, default=2.0, help="heatmap sigma in heatmap cells (default 2)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    from humans.heads.config import HeadConfig, parse_size
    from humans.heads.data.dataset import DenseData
    from humans.heads.data.features import FeatureCache, FeatureExtractor
    from humans.heads.prepare import prepare_task
    from humans.heads.probe import _no_features, even_layers, fit_task
    from humans.shared.backbone import load_backbone

    torch.set_num_threads(2)
    run, size = Path(a.run), parse_size(a.size)
    data = DenseData(run / "synth")
    train_keys, val_keys = data.split(0.25, 0)
    train_items, val_items = data.items("pose", train_keys), data.items("pose", val_keys)
    cache = FeatureCache(str(run / "feature_cache"))
    results: dict[str, dict] = {}
    for arm in a.arms.split(","):
        path = run / "backbones" / f"{arm}.safetensors"
        backbone = load_backbone(path)
        layers = even_layers(int(backbone.num_layers))
        cfg = HeadConfig(task="pose", kind="linear", backbone=str(path.resolve()), layers=layers, size=size,
                         flip_aug=False, flip_test=False, val_frac=0.25, seed=0, heatmap_stride=a.stride,
                         heatmap_sigma=a.sigma)
        extractor = FeatureExtractor(backbone, layers)
        tt = prepare_task(data, train_items, cfg, extractor, cache)
        vt = prepare_task(data, val_items, cfg, extractor, cache)
        probe = fit_task(tt, cfg, 0)
        results[arm] = pck_by_group(probe, vt, data, cfg)
        if "mean baseline" not in results:
            base = fit_task(tt, cfg, 0, use_features=False)
            results["mean baseline"] = pck_by_group(lambda f, hw: base(_no_features(f), hw), vt, data, cfg)
            token = size[0] // tt.feats.shape[-2]
            for name, with_arm in (("oracle_parts", False), ("arm+oracle", True)):
                t2, v2 = copy.copy(tt), copy.copy(vt)
                t2.feats = part_fractions(data, train_items, tt, size, token)
                v2.feats = part_fractions(data, val_items, vt, size, token)
                if with_arm:
                    t2.feats = torch.cat([tt.feats.float(), t2.feats], 1)
                    v2.feats = torch.cat([vt.feats.float(), v2.feats], 1)
                oracle = fit_task(t2, cfg, 0)
                results[name] = pck_by_group(oracle, v2, data, cfg)
        print(json.dumps({k: v for k, v in results.items()}), flush=True)
    print(f"PCK@0.1 of the pose probe, crops {size[0]}x{size[1]}, stride {a.stride}, sigma {a.sigma}:")
    print(f"{'':>16} " + " ".join(f"{g:>6}" for g in results[next(iter(results))]))
    for name, r in results.items():
        print(f"{name:>16} " + " ".join(f"{v:6.3f}" for v in r.values()))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
