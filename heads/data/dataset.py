"""Reader of the labelled dense data format (``humans-dense-v1``, docs/CONTRACTS.md) and of folders in
the same layout holding only some labels (a missing file means "no label for that task").

``DenseData(root)`` lists the images and their labels; ``items(task)`` gives the training/evaluation
units (one per labelled image for the dense tasks, one per annotated person for pose: top-down crops);
``load(item, task, size, flip)`` returns a sample at the network input size, and
``load_target(item, task)`` the labels at the original resolution for evaluation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humans.heads.data import transforms as T
from humans.heads.data.io import (ALBEDO_EXTS, DENSE_EXTS, AnnotationError, find_label, read_albedo, read_dense,
                           read_image, read_mask, read_parts)
from humans.heads.data.keypoints import KeypointSet, Person, load_keypoints
from humans.shared.humans.keypoints import NUM_KEYPOINTS
from humans.shared.humans.parts import NUM_PARTS

FORMAT = "humans-dense-v1"
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
DENSE_FOLDERS = {"seg": ("parts", (".png",)), "normal": ("normals", DENSE_EXTS),
                 "pointmap": ("pointmap", DENSE_EXTS), "albedo": ("albedo", ALBEDO_EXTS)}


@dataclass(frozen=True)
class Item:
    """One unit of a task: an image key, and for pose the index of the person in that image."""

    key: str
    person: int | None = None


class DenseData:
    """A DATA folder (see module docstring). ``keypoints`` overrides ``DATA/keypoints.json`` (e.g. a
    COCO-WholeBody JSON)."""

    def __init__(self, root: str | Path, keypoints: str | Path | None = None):
        self.root = Path(root)
        if not (self.root / "images").is_dir():
            raise AnnotationError(self.root, "images/", "folder missing: expected DATA/images/{id}.jpg")
        meta_path = self.root / "meta.json"
        self.meta: dict = {}
        if meta_path.is_file():
            try:
                self.meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as exc:
                raise AnnotationError(meta_path, "<file>", f"not valid JSON: {exc}") from None
            for key, want in (("format", FORMAT), ("keypoints", NUM_KEYPOINTS), ("parts", NUM_PARTS)):
                if key in self.meta and self.meta[key] != want:
                    raise AnnotationError(meta_path, key, f"{self.meta[key]!r}; expected {want!r}")
        self._images = {p.stem: p for p in sorted((self.root / "images").iterdir()) if p.suffix.lower() in IMAGE_EXTS}
        if not self._images:
            raise AnnotationError(self.root / "images", "images/", "no .jpg/.png images")
        self.keys = sorted(self._images)
        kp_path = Path(keypoints) if keypoints else self.root / "keypoints.json"
        self.kpts: KeypointSet | None = load_keypoints(kp_path) if kp_path.is_file() or keypoints else None
        self._people: dict[str, list[Person]] = self.kpts.by_key() if self.kpts else {}
        self._image_ids = ({info.key: iid for iid, info in self.kpts.images.items()} if self.kpts else {})

    # ------------------------------------------------------------------------------ listing
    def image_path(self, key: str) -> Path:
        return self._images[key]

    def people(self, key: str) -> list[Person]:
        return self._people.get(key, [])

    def image_id(self, key: str) -> int:
        return self._image_ids.get(key, self.keys.index(key))

    def label_path(self, task: str, key: str) -> Path | None:
        folder, exts = DENSE_FOLDERS[task]
        return find_label(self.root, folder, key, exts)

    def items(self, task: str, keys: list[str] | None = None) -> list[Item]:
        """Labelled units of ``task`` among ``keys`` (default: all images)."""
        keys = self.keys if keys is None else keys
        if task == "pose":
            return [Item(k, i) for k in keys for i, p in enumerate(self.people(k)) if (p.keypoints[:, 2] > 0).any()]
        return [Item(k) for k in keys if self.label_path(task, k) is not None]

    def split(self, val_frac: float, seed: int = 0) -> tuple[list[str], list[str]]:
        """Deterministic train/val split of the image keys (at least one image each when possible)."""
        rng = np.random.default_rng(seed)
        keys = list(np.array(self.keys)[rng.permutation(len(self.keys))])
        n_val = int(round(val_frac * len(keys)))
        if val_frac > 0 and len(keys) > 1:
            n_val = min(max(n_val, 1), len(keys) - 1)
        return sorted(keys[n_val:]), sorted(keys[:n_val])

    # ------------------------------------------------------------------------------ loading
    def _image(self, key: str) -> np.ndarray:
        img = read_image(self._images[key])
        if self.kpts is not None and key in self._image_ids:
            info = self.kpts.images[self._image_ids[key]]
            if (info.width, info.height) != (img.shape[1], img.shape[0]):
                raise AnnotationError(self.kpts.source, f"images[id={info.id}].width/height",
                                      f"{info.width}x{info.height} but {self._images[key].name} is "
                                      f"{img.shape[1]}x{img.shape[0]}")
        return img

    def _valid(self, task: str, key: str, hw: tuple[int, int], target: np.ndarray) -> np.ndarray:
        mask_path = find_label(self.root, "masks", key, (".png",))
        if mask_path is not None:
            return read_mask(mask_path, hw)
        if task == "albedo":
            return np.ones(hw, bool)
        return np.abs(target).sum(-1) > 0  # normals / pointmap are zero outside the person

    def load_target(self, item: Item, task: str) -> dict:
        """Labels at the original image resolution (what metrics compare against)."""
        path = self.label_path(task, item.key) if task != "pose" else None
        img_path = self._images[item.key]
        if task == "pose":
            p = self.people(item.key)[item.person]
            return {"keypoints": p.keypoints, "bbox": p.bbox, "area": p.area, "image_id": self.image_id(item.key)}
        from PIL import Image
        with Image.open(img_path) as im:
            hw = (im.height, im.width)
        if task == "seg":
            return {"parts": read_parts(path, NUM_PARTS, hw)}
        arr = read_albedo(path, hw) if task == "albedo" else read_dense(path, task, hw)
        if task == "normal":
            n = np.linalg.norm(arr, axis=-1)
            valid = self._valid(task, item.key, hw, arr)
            bad = valid & (np.abs(n - 1) > 0.05)
            if bad.any():
                raise AnnotationError(path, "normal", f"{int(bad.sum())} labelled pixels are not unit vectors "
                                                      f"(norm {float(n[bad][0]):.3g})")
        out = {task: arr, "valid": self._valid(task, item.key, hw, arr)}
        if task == "pointmap":
            people = self.people(item.key)
            out["keypoints"] = np.concatenate([p.keypoints for p in people]) if people else None
        return out

    def load(self, item: Item, task: str, size: tuple[int, int], flip: bool = False) -> dict:
        """A sample at the input ``size`` (H, W): ``image`` HxWx3 uint8 plus the task's labels
        (pose: ``kpts`` [K,3] in input pixels and ``affine`` original -> input before flipping)."""
        img = self._image(item.key)
        hw = img.shape[:2]
        out: dict = {}
        if task == "pose":
            p = self.people(item.key)[item.person]
            a = T.crop_affine(p.bbox, size)
            image = T.warp_image(img, a, size)
            k = p.keypoints.astype(np.float64).copy()
            k[:, :2] = T.apply_affine(k[:, :2], a)
            k[k[:, 2] == 0, :2] = 0
            if flip:
                image, k = image[:, ::-1], T.flip_keypoints(k, size[1])
            out.update(kpts=k.astype(np.float32), affine=a)
        else:
            image = T.resize_image(img, size)
            tgt = self.load_target(item, task)
            if task == "seg":
                parts = T.resize_nearest(tgt["parts"], size)
                out["parts"] = T.flip_parts(parts) if flip else parts
            else:
                arr = T.resize_nearest(tgt[task], size)
                valid = T.resize_nearest(tgt["valid"], size)
                if flip:
                    arr = T.flip_vector_map(arr) if task in ("normal", "pointmap") else arr[:, ::-1]
                    valid = valid[:, ::-1]
                out[task] = np.ascontiguousarray(arr, dtype=np.float32)
                out["valid"] = np.ascontiguousarray(valid)
            if flip:
                image = image[:, ::-1]
            out["orig_hw"] = hw
        out["image"] = np.ascontiguousarray(image)
        return out
