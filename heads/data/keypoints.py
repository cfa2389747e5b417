"""Keypoint annotation readers: our COCO-style 308-keypoint JSON and COCO-WholeBody JSON (133
keypoints, either one flat ``keypoints`` list of 133 triplets or COCO-WholeBody's split fields
``keypoints`` (17) + ``foot_kpts`` (6) + ``face_kpts`` (68) + ``lefthand_kpts`` (21) +
``righthand_kpts`` (21)), mapped into the 308 layout with ``shared.humans.keypoints.COCO_WHOLEBODY_TO_308``;
keypoints the source does not have are marked missing (v = 0).

Every structural problem (missing field, wrong length, unknown image id, bad visibility flag,
non-positive box, labelled keypoint far outside its image) raises ``AnnotationError`` naming the file
and the field, e.g. ``keypoints.json: field 'annotations[3].keypoints': ...``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from humans.heads.data.io import AnnotationError
from humans.shared.humans.keypoints import COCO_WHOLEBODY_TO_308, NUM_KEYPOINTS

WHOLEBODY_PARTS = (("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68), ("lefthand_kpts", 21),
                   ("righthand_kpts", 21))


@dataclass
class ImageInfo:
    id: int
    file_name: str
    width: int
    height: int

    @property
    def key(self) -> str:
        return Path(self.file_name).stem


@dataclass
class Person:
    """One person: ``keypoints`` [308, 3] (x, y, v; v = 0 missing, 1 occluded, 2 visible)."""

    ann_id: int
    image_id: int
    keypoints: np.ndarray
    bbox: tuple[float, float, float, float]
    area: float


@dataclass
class KeypointSet:
    source: str
    format: str  # "humans-308" | "coco-wholebody-133" | "coco-wholebody-split"
    images: dict[int, ImageInfo] = field(default_factory=dict)
    people: list[Person] = field(default_factory=list)

    def by_key(self) -> dict[str, list[Person]]:
        out: dict[str, list[Person]] = {}
        for p in self.people:
            out.setdefault(self.images[p.image_id].key, []).append(p)
        return out


def _num(file, where: str, value, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnnotationError(file, where, f"value {value!r} is not a finite number")
    if kind is int and int(value) != value:
        raise AnnotationError(file, where, f"value {value!r} is not an integer")
    return kind(value)


def _triplets(file, where: str, values, n: int | None) -> np.ndarray:
    if not isinstance(values, list):
        raise AnnotationError(file, where, f"expected a list of x, y, v numbers, got {type(values).__name__}")
    if len(values) % 3 or (n is not None and len(values) != 3 * n):
        want = f"3 x {n} = {3 * n}" if n is not None else "a multiple of 3"
        raise AnnotationError(file, where, f"{len(values)} numbers; expected {want}")
    # fast path: plain ints and floats, all finite (a 308-point file holds ~1000 numbers per person, and a
    # call per number cost a head's start-up seconds); else the per-number check names the first bad one
    arr = None
    if all(type(v) is float or type(v) is int for v in values):
        arr = np.array(values, dtype=np.float64)
        if not np.isfinite(arr).all():
            arr = None
    if arr is None:
        arr = np.array([_num(file, f"{where}[{i}]", v) for i, v in enumerate(values)], dtype=np.float64)
    arr = arr.reshape(-1, 3)
    bad = ~np.isin(arr[:, 2], (0, 1, 2))
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise AnnotationError(file, f"{where}[{3 * i + 2}]",
                              f"visibility {arr[i, 2]:g} of keypoint {i}; allowed 0, 1, 2")
    return arr


def _detect_format(file, ann: dict, where: str) -> str:
    kp = ann.get("keypoints")
    if kp is None:
        raise AnnotationError(file, f"{where}.keypoints", "missing")
    if not isinstance(kp, list):
        raise AnnotationError(file, f"{where}.keypoints", f"expected a list, got {type(kp).__name__}")
    if len(kp) == 3 * NUM_KEYPOINTS:
        return "humans-308"
    if len(kp) == 3 * 133:
        return "coco-wholebody-133"
    if len(kp) == 3 * 17 and any(k in ann for k, _ in WHOLEBODY_PARTS[1:]):
        return "coco-wholebody-split"
    raise AnnotationError(file, f"{where}.keypoints",
                          f"{len(kp)} numbers = {len(kp) / 3:g} keypoints; expected {NUM_KEYPOINTS} (this layout), "
                          "133 (COCO-WholeBody) or 17 with foot_kpts/face_kpts/lefthand_kpts/righthand_kpts")


def _to_308(file, ann: dict, where: str, fmt: str) -> np.ndarray:
    if fmt == "humans-308":
        return _triplets(file, f"{where}.keypoints", ann["keypoints"], NUM_KEYPOINTS)
    if fmt == "coco-wholebody-133":
        k133 = _triplets(file, f"{where}.keypoints", ann["keypoints"], 133)
    else:
        parts = []
        for name, n in WHOLEBODY_PARTS:
            if name not in ann:
                raise AnnotationError(file, f"{where}.{name}", f"missing (COCO-WholeBody needs {n} keypoints here)")
            parts.append(_triplets(file, f"{where}.{name}", ann[name], n))
        k133 = np.concatenate(parts)
    out = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float64)
    src = np.nonzero(COCO_WHOLEBODY_TO_308 >= 0)[0]
    out[COCO_WHOLEBODY_TO_308[src]] = k133[src]
    return out


def load_keypoints(path: str | Path, expect_format: str | None = None) -> KeypointSet:
    """Read a keypoint JSON (our 308 layout or COCO-WholeBody) into a ``KeypointSet`` of 308 keypoints."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AnnotationError(path, "<file>", "not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(path, "<file>", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AnnotationError(path, "<root>", "expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(path, key, "missing or not a list")
    out = KeypointSet(source=str(path), format="")
    for i, im in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(im, dict):
            raise AnnotationError(path, where, "expected an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in im:
                raise AnnotationError(path, f"{where}.{key}", "missing")
        iid = _num(path, f"{where}.id", im["id"], int)
        w, h = _num(path, f"{where}.width", im["width"], int), _num(path, f"{where}.height", im["height"], int)
        if w <= 0 or h <= 0:
            raise AnnotationError(path, f"{where}.width/height", f"{w}x{h}; expected positive")
        if iid in out.images:
            raise AnnotationError(path, f"{where}.id", f"duplicate image id {iid}")
        out.images[iid] = ImageInfo(iid, str(im["file_name"]), w, h)
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise AnnotationError(path, where, "expected an object")
        if "image_id" not in ann:
            raise AnnotationError(path, f"{where}.image_id", "missing")
        iid = _num(path, f"{where}.image_id", ann["image_id"], int)
        if iid not in out.images:
            raise AnnotationError(path, f"{where}.image_id", f"image id {iid} is not in 'images'")
        if ann.get("category_id", 1) != 1:
            continue  # not a person
        fmt = _detect_format(path, ann, where)
        if out.format and fmt != out.format:
            raise AnnotationError(path, f"{where}.keypoints",
                                  f"format {fmt} differs from earlier annotations ({out.format})")
        out.format = fmt
        kp = _to_308(path, ann, where, fmt)
        info = out.images[iid]
        lab = kp[:, 2] > 0
        far = lab & ((kp[:, 0] < -info.width) | (kp[:, 0] > 2 * info.width)
                     | (kp[:, 1] < -info.height) | (kp[:, 1] > 2 * info.height))
        if far.any():
            k = int(np.nonzero(far)[0][0])
            raise AnnotationError(path, f"{where}.keypoints", f"labelled keypoint {k} at ({kp[k, 0]:g}, {kp[k, 1]:g}) "
                                  f"lies far outside its {info.width}x{info.height} image")
        if "bbox" in ann:
            b = ann["bbox"]
            if not isinstance(b, list) or len(b) != 4:
                raise AnnotationError(path, f"{where}.bbox", f"{b!r}; expected [x, y, w, h]")
            bbox = tuple(_num(path, f"{where}.bbox[{j}]", v) for j, v in enumerate(b))
            if bbox[2] <= 0 or bbox[3] <= 0:
                raise AnnotationError(path, f"{where}.bbox", f"{list(bbox)}: width and height must be positive")
        elif lab.any():
            x0, y0 = kp[lab, :2].min(0)
            x1, y1 = kp[lab, :2].max(0)
            bbox = (float(x0), float(y0), float(max(x1 - x0, 1)), float(max(y1 - y0, 1)))
        else:
            raise AnnotationError(path, f"{where}.bbox", "missing and no labelled keypoint to derive it from")
        area = _num(path, f"{where}.area", ann["area"]) if "area" in ann else bbox[2] * bbox[3]
        if area <= 0:
            raise AnnotationError(path, f"{where}.area", f"{area:g}; expected positive")
        out.people.append(Person(int(ann.get("id", i + 1)), iid, kp.astype(np.float32), bbox, float(area)))
    if expect_format and out.people and out.format != expect_format:
        raise AnnotationError(path, "annotations", f"format {out.format}; expected {expect_format}")
    return out
