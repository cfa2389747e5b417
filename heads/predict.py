"""``predict``: run backbone + head on image files, write raw outputs (.npy) and overlays (.png).

Overlays: pose = keypoints and skeleton drawn on the image (keypoints above a score); seg = part
colours blended over the image; normal = (n + 1) / 2 as RGB; pointmap = depth (Z) through a colour
map; albedo = the predicted RGB. Pose is top-down: the crop is the given ``--bbox``, else, with ``--truth``,
the labelled person's box (the crop the head was trained and scored on), else the whole image.

Interchange files besides the previews: every task writes its raw output as ``.npy``; pose also writes
``keypoints_results.json`` (COCO keypoint results, 308 x 3 values per person, what pycocotools'
``COCO.loadRes`` reads) with ``keypoints_images.json`` (the COCO ``images``/``categories`` the
``image_id`` values refer to); seg also writes ``<image>_seg_parts.png``, an indexed PNG whose pixel
values are the part ids and whose palette holds the part colours. With ``--truth DATA`` (a labelled
DATA folder holding the images), ``<image>_<task>_vs_truth.png`` shows the prediction beside the
ground truth, drawn the same way; for maps labelled on part of the image only (normals and pointmap;
albedo where DATA has person masks) a middle panel shows the prediction on the labelled pixels alone
(the truth's background elsewhere), which is what the metrics score.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from humans.heads.data.io import read_image
from humans.heads.models.model import HeadModel, load_model
from humans.heads.tasks import get_task


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


def labelled_person_box(spec, data, key: str) -> tuple[float, float, float, float] | None:
    """Pose with a labelled DATA folder and no ``--bbox``: the box (x, y, w, h) of the image's first labelled
    person, the one whose keypoints ``truth`` draws; a head trained on person crops then sees a person crop
    (the whole image shows the person at a scale it never saw). None for other tasks or unlabelled images."""
    if spec.name != "pose" or data is None:
        return None
    people = data.people(key)
    return tuple(float(v) for v in people[0].bbox) if people else None


@torch.no_grad()
def predict_image(model: HeadModel, img: np.ndarray, bbox=None) -> np.ndarray:
    """The task output for one HxWx3 uint8 image, at the image's resolution (``TaskSpec.predict``).

    pose: [308, 3] (x, y, score) in image pixels (flip test when the config asks); seg: HxW classes;
    pointmap / normal / albedo: HxWx3.
    """
    return model.spec.predict(model, img, bbox)


def overlay(task: str, img: np.ndarray, pred: np.ndarray, min_score: float = 0.2) -> np.ndarray:
    """An RGB uint8 picture of ``pred`` (see module docstring; ``TaskSpec.overlay``)."""
    return get_task(task).overlay(img, pred, min_score)


def beside_truth(spec, data, key: str, img: np.ndarray, pred: np.ndarray, pred_overlay: np.ndarray,
                 min_score: float) -> np.ndarray | None:
    """The prediction's overlay and the ground truth's (same drawing), side by side, with the prediction
    on the labelled pixels only between them where the labels cover part of the image (None: no label)."""
    truth, valid = spec.truth_and_valid(data, key)
    if truth is None:
        return None
    panels = [pred_overlay]
    if valid is not None and not valid.all() and pred.shape == truth.shape:
        panels.append(spec.overlay(img, np.where(valid[..., None], pred, truth), min_score))
    return np.concatenate(panels + [spec.overlay(img, truth, min_score)], axis=1)


def run_predict(checkpoint: str, images: list[str], out_dir: str, task: str | None = None, bbox: str | None = None,
                backbone: str | None = None, min_score: float = 0.2, device: str = "cpu",
                truth_data: str | None = None) -> list[Path]:
    """Predict every image; with ``truth_data`` (a DATA folder) also write ``<image>_<task>_vs_truth.png``
    (prediction | ground truth) for the images that folder labels."""
    model = load_model(checkpoint, backbone).to(device)
    data = None
    if truth_data:
        from humans.heads.data.dataset import DenseData

        data = DenseData(truth_data)
    spec = model.spec
    if task and task != spec.name:
        raise ValueError(f"--task {task} but {checkpoint} is a {spec.name} head")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    records: list[dict] = []
    for image_id, path in enumerate(images, start=1):
        img = read_image(path)
        box = None if bbox else labelled_person_box(spec, data, Path(path).stem)
        pred = predict_image(model, img, box or _parse_bbox(bbox, img.shape[:2]))
        stem = f"{Path(path).stem}_{spec.name}"
        np.save(out / f"{stem}.npy", pred)
        shown = spec.overlay(img, pred, min_score)
        Image.fromarray(shown).save(out / f"{stem}.png")
        written += [out / f"{stem}.png", out / f"{stem}.npy"]
        pair = beside_truth(spec, data, Path(path).stem, img, pred, shown, min_score) if data is not None else None
        if pair is not None:
            Image.fromarray(pair).save(out / f"{stem}_vs_truth.png")
            written.append(out / f"{stem}_vs_truth.png")
        written += spec.write_prediction(out, stem, pred)
        records.append({"image_id": image_id, "path": str(path), "width": int(img.shape[1]),
                        "height": int(img.shape[0]), "pred": pred})
    return written + spec.write_predictions(out, records)
