"""Readers of single label files: images, indexed part PNGs, person masks, dense maps (.npy / .exr)
and albedo (.png / .npy / .exr). Each validates what it reads and raises ``AnnotationError`` naming
the file and the field (shape, dtype, value range) that is wrong.

OpenEXR: OpenCV only decodes .exr when ``OPENCV_IO_ENABLE_OPENEXR=1`` is in the environment before
its codecs are first used; this module sets it before importing cv2.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

DENSE_EXTS = (".npy", ".exr")
ALBEDO_EXTS = (".png", ".npy", ".exr")


class AnnotationError(ValueError):
    """A label file or annotation that is missing, unreadable or inconsistent; names file and field."""

    def __init__(self, file: str | Path, field: str, problem: str):
        self.file, self.field, self.problem = str(file), field, problem
        super().__init__(f"{file}: field '{field}': {problem}")


def read_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise AnnotationError(path, "image", f"cannot decode: {exc}") from None


def _check_hw(path, field: str, arr: np.ndarray, hw: tuple[int, int] | None) -> None:
    if hw is not None and tuple(arr.shape[:2]) != tuple(hw):
        raise AnnotationError(path, field, f"size {arr.shape[1]}x{arr.shape[0]} (WxH) differs from the "
                                           f"image's {hw[1]}x{hw[0]}")


def read_parts(path: str | Path, num_classes: int, hw: tuple[int, int] | None = None) -> np.ndarray:
    """HxW uint8 part classes from an indexed (mode P) or grayscale (mode L) PNG."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise AnnotationError(path, "parts", f"PNG mode {im.mode!r}; expected indexed 'P' (or 'L') "
                                                     "with pixel value = class")
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError) as exc:
        raise AnnotationError(path, "parts", f"cannot decode: {exc}") from None
    _check_hw(path, "parts", arr, hw)
    if arr.size and int(arr.max()) >= num_classes and int(arr.max()) != 255:
        bad = sorted(set(np.unique(arr).tolist()) - set(range(num_classes)) - {255})
        raise AnnotationError(path, "parts", f"class values {bad[:5]} outside 0..{num_classes - 1} (255 = ignore)")
    return arr.astype(np.uint8)


def read_mask(path: str | Path, hw: tuple[int, int] | None = None) -> np.ndarray:
    """HxW bool person mask (pixels > 127)."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError) as exc:
        raise AnnotationError(path, "mask", f"cannot decode: {exc}") from None
    _check_hw(path, "mask", arr, hw)
    return arr > 127


def _read_exr(path: Path, field: str) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if arr is None:
        raise AnnotationError(path, field, "cannot decode .exr (OpenCV built without OpenEXR, or "
                                           "OPENCV_IO_ENABLE_OPENEXR was unset when cv2 was first used)")
    if arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[..., 2::-1] if arr.shape[2] == 3 else arr[..., [2, 1, 0]]  # OpenCV stores BGR
    return np.ascontiguousarray(arr)


def write_exr(path: str | Path, arr: np.ndarray) -> None:
    """Write an HxWx3 float map as .exr (channel order as given; stored BGR like OpenCV expects)."""
    arr = np.asarray(arr, np.float32)
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr[..., ::-1])):
        raise OSError(f"{path}: OpenCV could not write .exr")


def read_dense(path: str | Path, field: str, hw: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 float32 map from .npy or .exr, checked for shape and finite values."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise AnnotationError(path, field, f"cannot read .npy: {exc}") from None
    elif path.suffix == ".exr":
        arr = _read_exr(path, field)
    else:
        raise AnnotationError(path, field, f"unsupported extension {path.suffix!r}; allowed {DENSE_EXTS}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise AnnotationError(path, field, f"shape {arr.shape}; expected HxWx3")
    if not np.issubdtype(arr.dtype, np.floating):
        raise AnnotationError(path, field, f"dtype {arr.dtype}; expected float16/float32")
    _check_hw(path, field, arr, hw)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise AnnotationError(path, field, f"{int((~np.isfinite(arr)).sum())} non-finite values")
    return arr


def read_albedo(path: str | Path, hw: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 float32 albedo in [0, 1] from an RGB PNG (uint8) or a float .npy/.exr map."""
    path = Path(path)
    if path.suffix == ".png":
        arr = read_image(path).astype(np.float32) / 255.0
        _check_hw(path, "albedo", arr, hw)
        return arr
    arr = read_dense(path, "albedo", hw)
    if arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
        raise AnnotationError(path, "albedo", f"values in [{arr.min():.3g}, {arr.max():.3g}]; expected [0, 1]")
    return np.clip(arr, 0, 1)


def find_label(root: Path, folder: str, key: str, exts: tuple[str, ...]) -> Path | None:
    """The first existing ``root/folder/key.ext`` among ``exts`` (None: no label for this task)."""
    for ext in exts:
        p = root / folder / f"{key}{ext}"
        if p.is_file():
            return p
    return None
