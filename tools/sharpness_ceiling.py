"""How sharp can a dense head be at a given output stride? Scores the ground truth itself, reduced to one
value per ``stride`` x ``stride`` cell and blown back up the way a head's output is, with the sharpness
metrics of ``heads.metrics`` (seg boundary F1, normals gradient ratio) beside mIoU and the angular error.

- seg: each cell keeps its exact class shares (area average of the one-hot labels), upsampled bilinearly
  and arg-maxed, as a head's logits are;
- normal: each cell keeps the mean of its labelled normals, upsampled bilinearly and renormalised.

That is the ceiling of a head whose every output cell is exactly right: what is lost below it is the output
grid's, not the features'. Used for heads.md's sharpness section (issue #12)::

    python tools/sharpness_ceiling.py --data runs/main/synth --strides 1,2,4,8,16 --json ceiling.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from humans.heads.data.dataset import DenseData  # noqa: E402
from humans.heads.metrics import NormalMetric, SegMetric  # noqa: E402
from humans.shared.humans.parts import NUM_PARTS, PART_NAMES  # noqa: E402


def cell_grid(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    return max(1, round(hw[0] / stride)), max(1, round(hw[1] / stride))


def reduce_and_restore(maps: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """[C,H,W] ``maps`` averaged over each cell where ``weight`` [H,W] is set, then bilinearly back to HxW."""
    hw = maps.shape[-2:]
    if stride == 1:
        return maps
    grid = cell_grid(hw, stride)
    w = weight[None, None].float()
    num = F.adaptive_avg_pool2d(maps[None] * w, grid)
    den = F.adaptive_avg_pool2d(w, grid).clamp_min(1e-6)
    return F.interpolate(num / den, size=hw, mode="bilinear", align_corners=False)[0]


def seg_at_stride(parts: np.ndarray, stride: int) -> np.ndarray:
    labels = torch.from_numpy(np.where(parts == 255, 0, parts).astype(np.int64))
    onehot = F.one_hot(labels, NUM_PARTS).permute(2, 0, 1).float()
    return reduce_and_restore(onehot, torch.ones(parts.shape), stride).argmax(0).numpy()


def normal_at_stride(normals: np.ndarray, valid: np.ndarray, stride: int) -> np.ndarray:
    n = torch.from_numpy(np.ascontiguousarray(normals, dtype=np.float32)).permute(2, 0, 1)
    out = reduce_and_restore(n, torch.from_numpy(valid), stride)
    return F.normalize(out, dim=0, eps=1e-6).permute(1, 2, 0).numpy()


def ceiling(data_dir: str | Path, strides: list[int], limit: int | None = None) -> list[dict]:
    data = DenseData(data_dir)
    keys = data.keys[:limit] if limit else data.keys
    segs = {s: SegMetric(NUM_PARTS, PART_NAMES) for s in strides}
    normals = {s: NormalMetric() for s in strides}
    for item in data.items("seg", keys):
        parts = data.load_target(item, "seg")["parts"]
        for s in strides:
            segs[s].update(seg_at_stride(parts, s), parts)
    for item in data.items("normal", keys):
        t = data.load_target(item, "normal")
        valid = np.asarray(t["valid"], bool)
        for s in strides:
            normals[s].update(normal_at_stride(t["normal"], valid, s), t["normal"], valid)
    rows = []
    for s in strides:
        seg, nrm = segs[s].compute(), normals[s].compute()
        rows.append({"stride": s, "seg_mIoU": seg["mIoU"], "seg_boundary_F1": seg["boundary_F1"],
                     "normal_mean_deg": nrm["mean_deg"], "normal_grad_ratio": nrm["grad_ratio"]})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| output stride (px) | seg mIoU | seg boundary F1 | normals mean angle (deg) | normals gradient ratio |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['stride']} | {r['seg_mIoU']:.3f} | {r['seg_boundary_F1']:.3f} | {r['normal_mean_deg']:.2f} | "
              f"{r['normal_grad_ratio']:.3f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="DATA folder in the humans-dense-v1 layout (parts and normals)")
    ap.add_argument("--strides", default="1,2,4,8,16",
                    help="cell sizes in pixels of the DATA images, comma-separated (default 1,2,4,8,16)")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N images")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    try:
        strides = [int(s) for s in args.strides.split(",")]
    except ValueError:
        ap.error(f"--strides {args.strides!r}: allowed comma-separated positive integers")
    if not strides or min(strides) < 1:
        ap.error(f"--strides {args.strides!r}: allowed comma-separated positive integers")
    rows = ceiling(args.data, strides, args.limit)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
