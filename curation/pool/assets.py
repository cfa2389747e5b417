"""Real photographs that installed packages ship, with hand-measured person boxes.

People: scikit-image ``astronaut`` and ``camera``, matplotlib's ``grace_hopper.jpg``, ultralytics'
``assets/bus.jpg`` and ``assets/zidane.jpg`` (found inside the installed package, never downloaded),
and scikit-image's ``lfw_subset`` 25x25 face crops. Scenes without people: scikit-image's coffee,
chelsea, rocket, coins, brick, grass, gravel, hubble, retina, ihc, moon, motorcycle, clock, cell.
Person boxes (x0, y0, x1, y1 in source pixels) were read off the photos by eye.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class PersonPatch:
    """A region of a real photo around one or two people, usable as a cut-out."""

    name: str
    source: str  # where the photo comes from (package and file)
    box: tuple[int, int, int, int]  # crop of the source photo (x0, y0, x1, y1)
    n_persons: int
    full_body: bool  # head to feet inside the crop


# The crops (x0, y0, x1, y1) keep a little context around the people.
PERSON_PATCHES: tuple[PersonPatch, ...] = (
    PersonPatch("astronaut", "skimage.data.astronaut", (0, 0, 390, 512), 1, False),
    PersonPatch("camera", "skimage.data.camera", (0, 40, 430, 512), 1, False),
    PersonPatch("grace_hopper", "matplotlib sample_data/grace_hopper.jpg", (0, 0, 512, 600), 1, False),
    PersonPatch("bus_coat", "ultralytics assets/bus.jpg", (28, 378, 268, 925), 1, True),
    PersonPatch("bus_black", "ultralytics assets/bus.jpg", (200, 388, 365, 880), 1, True),
    PersonPatch("bus_pair", "ultralytics assets/bus.jpg", (25, 370, 370, 930), 2, True),
    PersonPatch("zidane_right", "ultralytics assets/zidane.jpg", (735, 25, 1180, 720), 1, False),
    PersonPatch("zidane_left", "ultralytics assets/zidane.jpg", (100, 180, 730, 720), 1, False),
)

# Whole photos with people: (name, n_persons)
PERSON_PHOTOS: tuple[tuple[str, int], ...] = (
    ("astronaut", 1), ("camera", 1), ("grace_hopper", 1), ("bus", 4), ("zidane", 2))

SCENE_NAMES = ("coffee", "chelsea", "rocket", "coins", "brick", "grass", "gravel", "hubble_deep_field",
               "retina", "immunohistochemistry", "moon", "motorcycle", "clock", "cell")
TEXTURE_NAMES = ("brick", "grass", "gravel")


def _rgb(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def _ultralytics_asset(name: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("ultralytics is not installed: its assets/bus.jpg and zidane.jpg are needed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "assets", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} missing from the installed ultralytics wheel")
    return path


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A real photo as HxWx3 uint8 (cached; read-only)."""
    import skimage.data as sd

    if name == "grace_hopper":
        import matplotlib.cbook as cbook

        arr = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    elif name in ("bus", "zidane"):
        arr = np.asarray(Image.open(_ultralytics_asset(f"{name}.jpg")).convert("RGB"))
    elif name == "motorcycle":
        arr = sd.stereo_motorcycle()[0]
    elif name == "clock":
        arr = sd.clock()
    else:
        arr = getattr(sd, name)()
    arr = _rgb(arr)
    arr.setflags(write=False)
    return arr


def patch_source(patch: PersonPatch) -> str:
    return {"astronaut": "astronaut", "camera": "camera", "grace_hopper": "grace_hopper"}.get(
        patch.name, patch.name.split("_")[0])


@functools.lru_cache(maxsize=None)
def patch_pixels(name: str) -> np.ndarray:
    patch = next(p for p in PERSON_PATCHES if p.name == name)
    x0, y0, x1, y1 = patch.box
    arr = photo(patch_source(patch))[y0:y1, x0:x1].copy()
    arr.setflags(write=False)
    return arr


@functools.lru_cache(maxsize=1)
def lfw_faces() -> np.ndarray:
    """scikit-image's 200 LFW face crops (25x25 grey, float 0..1) as uint8 [N, 25, 25]."""
    import skimage.data as sd

    return np.clip(np.asarray(sd.lfw_subset()) * 255.0 + 0.5, 0, 255).astype(np.uint8)
