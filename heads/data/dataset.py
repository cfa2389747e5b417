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

from humans.heads.data.io import AnnotationError, find_label, read_image, read_mask
from humans.heads.data.keypoints import KeypointSet, Person, load_keypoints
from humans.heads.tasks import get_task
from humans.shared.humans.keypoints import NUM_KEYPOINTS
from humans.shared.humans.parts import NUM_PARTS

FORMAT = "humans-dense-v1"
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


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
        """The label file of ``task`` for image ``key`` (None: not labelled for that task)."""
        if get_task(task).label_folder is None:
            return None
        folder, exts = get_task(task).label_folder
        return find_label(self.root, folder, key, exts)

    def items(self, task: str, keys: list[str] | None = None) -> list[Item]:
        """Labelled units of ``task`` among ``keys`` (default: all images); ``TaskSpec.items``."""
        return get_task(task).items(self, self.keys if keys is None else keys)

    def labelled_items(self, folder: str, exts: tuple[str, ...], keys: list[str]) -> list[Item]:
        """One unit per image of ``keys`` with a label file ``folder/<key><ext>``."""
        return [Item(k) for k in keys if find_label(self.root, folder, k, exts) is not None]

    def person_items(self, keys: list[str]) -> list[Item]:
        """One unit per person with at least one labelled keypoint in the images ``keys``."""
        return [Item(k, i) for k in keys for i, p in enumerate(self.people(k)) if (p.keypoints[:, 2] > 0).any()]

    def split(self, val_frac: float, seed: int = 0) -> tuple[list[str], list[str]]:
        """Deterministic train/val split of the image keys (at least one image each when possible)."""
        rng = np.random.default_rng(seed)
        keys = list(np.array(self.keys)[rng.permutation(len(self.keys))])
        n_val = int(round(val_frac * len(keys)))
        if val_frac > 0 and len(keys) > 1:
            n_val = min(max(n_val, 1), len(keys) - 1)
        return sorted(keys[n_val:]), sorted(keys[:n_val])

    # ------------------------------------------------------------------------------ loading
    def image(self, key: str) -> np.ndarray:
        """HxWx3 uint8 RGB, checked against the keypoint file's width/height when it lists the image."""
        img = read_image(self._images[key])
        if self.kpts is not None and key in self._image_ids:
            info = self.kpts.images[self._image_ids[key]]
            if (info.width, info.height) != (img.shape[1], img.shape[0]):
                raise AnnotationError(self.kpts.source, f"images[id={info.id}].width/height",
                                      f"{info.width}x{info.height} but {self._images[key].name} is "
                                      f"{img.shape[1]}x{img.shape[0]}")
        return img

    def image_hw(self, key: str) -> tuple[int, int]:
        """(H, W) of image ``key`` from its header."""
        from PIL import Image

        with Image.open(self._images[key]) as im:
            return (im.height, im.width)

    def mask(self, key: str, hw: tuple[int, int]) -> np.ndarray | None:
        """The person mask ``masks/<key>.png`` as HxW bool (None: DATA has none for this image)."""
        path = find_label(self.root, "masks", key, (".png",))
        return read_mask(path, hw) if path is not None else None

    def load_target(self, item: Item, task: str) -> dict:
        """Labels at the original image resolution (what metrics compare against); ``TaskSpec.load_target``."""
        return get_task(task).load_target(self, item)

    def load(self, item: Item, task: str, size: tuple[int, int], flip: bool = False) -> dict:
        """A sample at the input ``size`` (H, W): ``image`` HxWx3 uint8 plus the task's labels
        (``TaskSpec.load_sample``; pose: ``kpts`` [K,3] in input pixels and ``affine`` original ->
        input before flipping; whole-image tasks: ``orig_hw`` too)."""
        return get_task(task).load_sample(self, item, size, flip)
