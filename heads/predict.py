"""``predict``: run backbone + head on image files, write raw outputs (.npy) and overlays (.png).

Overlays: pose = keypoints and skeleton drawn on the image (keypoints above a score); seg = part
colours blended over the image; normal = (n + 1) / 2 as RGB; pointmap = depth (Z) through a colour
map; albedo = the predicted RGB. Pose is top-down: the crop is the given ``--bbox`` or the whole image.

Interchange files besides the previews: every task writes its raw output as ``.npy``; pose also writes
``keypoints_results.json`` (COCO keypoint results, 308 x 3 values per person, what pycocotools'
``COCO.loadRes`` reads) with ``keypoints_images.json`` (the COCO ``images``/``categories`` the
``image_id`` values refer to); seg also writes ``<image>_seg_parts.png``, an indexed PNG whose pixel
values are the part ids and whose palette holds the part colours.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from humans.heads.data.features import to_tensor
from humans.heads.data.io import read_image
from humans.heads.data.transforms import apply_affine, crop_affine, decode_heatmaps, invert_affine, resize_image, warp_image
from humans.heads.evaluate import flip_back
from humans.heads.metrics import coco_keypoint_gt, coco_keypoint_results
from humans.shared.synth.writer import encode_parts_png
from humans.heads.models.model import HeadModel, load_model
from humans.shared.humans.keypoints import BODY, FACE, HANDS, SKELETON
from humans.shared.humans.parts import PART_COLORS


def _parse_bbox(text: str | None, hw: tuple[int, int]) -> tuple[float, float, float, float]:
    if not text:
        return (0.0, 0.0, float(hw[1]), float(hw[0]))
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--bbox {text!r}: expected x,y,w,h") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"--bbox {text!r}: width and height must be positive")
    return (x, y, w, h)


@torch.no_grad()
def predict_image(model: HeadModel, img: np.ndarray, bbox=None) -> np.ndarray:
    """The task output for one HxWx3 uint8 image, at the image's resolution.

    pose: [308, 3] (x, y, score) in image pixels (flip test when the config asks); seg: HxW classes;
    pointmap / normal / albedo: HxWx3.
    """
    cfg = model.config
    size = tuple(cfg.size)
    if cfg.task == "pose":
        a = crop_affine(bbox or (0, 0, img.shape[1], img.shape[0]), size)
        crop = warp_image(img, a, size)
        x = to_tensor([crop]).to(_device(model))
        hm = model(x).float().cpu()
        if cfg.flip_test:
            hm = 0.5 * (hm + flip_back(model(x.flip(-1)).float().cpu(), "pose"))
        xy, score = decode_heatmaps(hm[0].numpy(), cfg.heatmap_stride)
        return np.concatenate([apply_affine(xy, invert_affine(a)), score[:, None]], axis=1)
    out = model(to_tensor([resize_image(img, size)]).to(_device(model))).float().cpu()
    up = F.interpolate(out, size=img.shape[:2], mode="bilinear", align_corners=False)[0]
    if cfg.task == "seg":
        return up.argmax(0).numpy().astype(np.uint8)
    if cfg.task == "normal":
        up = F.normalize(up, dim=0, eps=1e-6)
    return up.permute(1, 2, 0).numpy()


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _colour(idx: int) -> tuple[int, int, int]:
    if idx in BODY:
        return (255, 80, 40)
    if idx in HANDS:
        return (40, 200, 255)
    return (120, 255, 120) if idx in FACE else (255, 255, 255)


def overlay(task: str, img: np.ndarray, pred: np.ndarray, min_score: float = 0.2) -> np.ndarray:
    """An RGB uint8 picture of ``pred`` (see module docstring)."""
    if task == "pose":
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
    if task == "seg":
        col = PART_COLORS[np.clip(pred, 0, len(PART_COLORS) - 1)]
        fg = (pred > 0)[..., None]
        return np.where(fg, (0.4 * img + 0.6 * col), img).astype(np.uint8)
    if task == "normal":
        return np.clip((pred + 1) * 127.5, 0, 255).astype(np.uint8)
    if task == "pointmap":
        import matplotlib

        z = pred[..., 2]
        lo, hi = np.percentile(z, [2, 98])
        t = np.clip((z - lo) / max(hi - lo, 1e-6), 0, 1)
        return (matplotlib.colormaps["turbo"](1.0 - t)[..., :3] * 255).astype(np.uint8)
    if task == "albedo":
        return np.clip(pred * 255, 0, 255).astype(np.uint8)
    raise ValueError(task)


def run_predict(checkpoint: str, images: list[str], out_dir: str, task: str | None = None, bbox: str | None = None,
                backbone: str | None = None, min_score: float = 0.2, device: str = "cpu") -> list[Path]:
    model = load_model(checkpoint, backbone).to(device)
    if task and task != model.config.task:
        raise ValueError(f"--task {task} but {checkpoint} is a {model.config.task} head")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    coco_images, coco_dt = [], []
    for image_id, path in enumerate(images, start=1):
        img = read_image(path)
        pred = predict_image(model, img, _parse_bbox(bbox, img.shape[:2]))
        stem = f"{Path(path).stem}_{model.config.task}"
        np.save(out / f"{stem}.npy", pred)
        Image.fromarray(overlay(model.config.task, img, pred, min_score)).save(out / f"{stem}.png")
        written += [out / f"{stem}.png", out / f"{stem}.npy"]
        if model.config.task == "seg":
            (out / f"{stem}_parts.png").write_bytes(encode_parts_png(pred))
            written.append(out / f"{stem}_parts.png")
        if model.config.task == "pose":
            coco_images.append({"id": image_id, "file_name": str(path), "width": int(img.shape[1]),
                                "height": int(img.shape[0])})
            coco_dt.append({"image_id": image_id, "keypoints": pred,
                            "score": float(np.clip(pred[:, 2], 0, None).mean())})
    if model.config.task == "pose":
        import json

        dataset = coco_keypoint_gt([], len(pred)) if images else {"categories": []}
        dataset["images"] = coco_images
        (out / "keypoints_images.json").write_text(json.dumps(dataset))
        (out / "keypoints_results.json").write_text(json.dumps(coco_keypoint_results(coco_dt)))
        written += [out / "keypoints_results.json", out / "keypoints_images.json"]
    return written
