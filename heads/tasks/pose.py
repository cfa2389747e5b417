"""Pose: 308 keypoints per person, top-down (person crops), as heatmaps.

Labels ``DATA/keypoints.json`` (COCO-style, 308 keypoints or COCO-WholeBody mapped to them); units are
annotated people; output: 308 heatmaps at input / ``heatmap_stride``, decoded by argmax + quarter
offset and mapped back through the crop; loss: heatmap MSE with online hard keypoint mining; metric:
OKS AP (pycocotools, on COCO files written beside the metrics) and PCK@0.1; flip test; overlay:
skeleton and keypoints; export: heatmaps [B, 308, H/4, W/4] of a person crop, and ``predict`` writes
COCO keypoint results.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from humans.heads.data import transforms as T
from humans.heads.data.features import to_tensor
from humans.heads.losses import heatmap_ohem_loss
from humans.heads.metrics import PoseMetric, coco_keypoint_gt, coco_keypoint_results
from humans.heads.tasks.base import TaskSpec, _device
from humans.shared.humans.keypoints import BODY, FACE, HANDS, NUM_KEYPOINTS, SIGMAS, SKELETON, flip_index


def _colour(idx: int) -> tuple[int, int, int]:
    if idx in BODY:
        return (255, 80, 40)
    if idx in HANDS:
        return (40, 200, 255)
    return (120, 255, 120) if idx in FACE else (255, 255, 255)


class PoseTask(TaskSpec):
    name = "pose"
    channels = NUM_KEYPOINTS
    decoder = "deconv"
    default_width = 256
    small_init = True          # near-zero start (flat maps otherwise win short runs)
    dense = False
    view = "crop"
    flip_test = True
    metric_rows = (("AP", "pose OKS AP", True), ("AP/body", "pose OKS AP, 25 body points", True),
                   ("PCK@0.1", "pose PCK@0.1", True))

    # ------------------------------------------------------------------ output
    def out_hw(self, cfg) -> tuple[int, int]:
        return cfg.heatmap_hw

    def model_output(self, y, input_hw):
        return y  # heatmaps of the crop, decoded by the caller

    # ------------------------------------------------------------------ target encoding
    def items(self, data, keys):
        return data.person_items(keys)

    def load_target(self, data, item) -> dict:
        p = data.people(item.key)[item.person]
        return {"keypoints": p.keypoints, "bbox": p.bbox, "area": p.area, "image_id": data.image_id(item.key)}

    def load_sample(self, data, item, size, flip: bool) -> dict:
        """The person crop and ``kpts`` [K,3] in crop pixels, ``affine`` original -> crop before flipping."""
        img = data.image(item.key)
        p = data.people(item.key)[item.person]
        a = T.crop_affine(p.bbox, size)
        image = T.warp_image(img, a, size)
        k = p.keypoints.astype(np.float64).copy()
        k[:, :2] = T.apply_affine(k[:, :2], a)
        k[k[:, 2] == 0, :2] = 0
        if flip:
            image, k = image[:, ::-1], T.flip_keypoints(k, size[1])
        return {"kpts": k.astype(np.float32), "affine": a, "image": np.ascontiguousarray(image)}

    def batch_targets(self, targets, idx, cfg):
        hm, w = T.gaussian_heatmaps(targets["kpts"][idx], cfg.heatmap_hw, cfg.heatmap_stride, cfg.heatmap_sigma)
        return {"heatmaps": hm, "kpt_weight": w}

    # ------------------------------------------------------------------ loss
    def loss(self, pred, batch, w):
        return heatmap_ohem_loss(pred, batch["heatmaps"], batch["kpt_weight"], w.ohem_ratio)

    # ------------------------------------------------------------------ metrics and evaluation
    def metric(self, coco_dir=None):
        return PoseMetric(SIGMAS, coco_dir=coco_dir)

    def flip_back(self, out: torch.Tensor) -> torch.Tensor:
        """Heatmaps of the mirrored crop in the original orientation (left/right keypoints swapped)."""
        return out.flip(-1)[:, torch.from_numpy(flip_index())]

    def update_metric(self, metric, out, target, extra, cfg) -> None:
        xy, score = T.decode_heatmaps(out.numpy(), cfg.heatmap_stride)
        xy = T.apply_affine(xy, T.invert_affine(extra["affine"]))
        pred = np.concatenate([xy, score[:, None]], axis=1)
        metric.update(target["image_id"], target["keypoints"], target["bbox"], target["area"], pred,
                      float(np.clip(score, 0, None).mean()))

    def mean_output(self, targets, cfg, per_pixel: bool) -> torch.Tensor:
        """Heatmaps at the mean position of each keypoint in the crop."""
        k = targets["kpts"]
        lab = (k[..., 2] > 0).float()
        mean_xy = (k[..., :2] * lab[..., None]).sum(0) / lab.sum(0).clamp_min(1)[:, None]
        kp = torch.cat([mean_xy, (lab.sum(0) > 0).float()[:, None] * 2], dim=1)
        const, _ = T.gaussian_heatmaps(kp[None], cfg.heatmap_hw, cfg.heatmap_stride, cfg.heatmap_sigma)
        return const[0]

    def eval_files(self, out_json):
        """COCO files beside the metrics JSON (or in the working folder without one)."""
        return Path(out_json).parent / f"{Path(out_json).stem}_coco" if out_json else Path("eval_coco")

    def eval_record(self, files):
        return {"coco": {"ground_truth": str(files / "keypoints_gt.json"),
                         "results": str(files / "keypoints_results.json"),
                         "kpt_oks_sigmas": [float(v) for v in SIGMAS],
                         "note": "AP, AP50, AP75 are pycocotools COCOeval('keypoints') on these two files "
                                 "with these per-keypoint sigmas"}}

    # ------------------------------------------------------------------ prediction and visualisation
    def predict(self, model, img, bbox=None) -> np.ndarray:
        """[308, 3] (x, y, score) in image pixels; the crop is ``bbox`` (default: the whole image)."""
        cfg = model.config
        size = tuple(cfg.size)
        a = T.crop_affine(bbox or (0, 0, img.shape[1], img.shape[0]), size)
        crop = T.warp_image(img, a, size)
        x = to_tensor([crop]).to(_device(model))
        hm = model(x).float().cpu()
        if cfg.flip_test:
            hm = 0.5 * (hm + self.flip_back(model(x.flip(-1)).float().cpu()))
        xy, score = T.decode_heatmaps(hm[0].numpy(), cfg.heatmap_stride)
        return np.concatenate([T.apply_affine(xy, T.invert_affine(a)), score[:, None]], axis=1)

    def truth(self, data, key):
        """The first labelled person's keypoints as [308, 3] (x, y, score 1 where labelled, else 0)."""
        people = [p for p in data.people(key) if (p.keypoints[:, 2] > 0).any()]
        if not people:
            return None
        k = people[0].keypoints.astype(np.float64)
        return np.concatenate([k[:, :2], (k[:, 2:3] > 0).astype(np.float64)], axis=1)

    def overlay(self, img, pred, min_score=0.2):
        canvas = img.copy()
        r = max(1, round(min(img.shape[:2]) / 200))
        ok = pred[:, 2] >= min_score
        for i, j in SKELETON:
            if ok[i] and ok[j]:
                cv2.line(canvas, tuple(int(v) for v in pred[i, :2]), tuple(int(v) for v in pred[j, :2]),
                         _colour(i), max(1, r // 2 + (1 if i in BODY else 0)), cv2.LINE_AA)
        for k in np.nonzero(ok)[0]:
            cv2.circle(canvas, (int(pred[k, 0]), int(pred[k, 1])), r if k in BODY else max(1, r // 2),
                       _colour(int(k)), -1, cv2.LINE_AA)
        return canvas

    def write_predictions(self, out: Path, records) -> list[Path]:
        """COCO ``keypoints_results.json`` and the ``images``/``categories`` it refers to."""
        from humans.shared.shards import atomic_write_json

        dataset = coco_keypoint_gt([], len(records[-1]["pred"])) if records else {"categories": []}
        dataset["images"] = [{"id": r["image_id"], "file_name": r["path"], "width": r["width"],
                              "height": r["height"]} for r in records]
        dt = [{"image_id": r["image_id"], "keypoints": r["pred"],
               "score": float(np.clip(r["pred"][:, 2], 0, None).mean())} for r in records]
        atomic_write_json(out / "keypoints_images.json", dataset, indent=None, sort_keys=False)
        atomic_write_json(out / "keypoints_results.json", coco_keypoint_results(dt), indent=None, sort_keys=False)
        return [out / "keypoints_results.json", out / "keypoints_images.json"]


SPEC = PoseTask()
