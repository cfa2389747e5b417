"""The 29-class body-part layout shared by the synthetic generator and the segmentation head.

Class 0 is background. "Left" and "right" are the person's own sides. Skin of a limb is labelled
with the limb's class; clothing over it takes the clothing class (upper clothing covers torso and
sleeves, lower clothing covers hips and legs), shoes take the shoe classes. ``face_neck`` is the skin
of the face, head and neck not covered by a finer face class (hair, lips, teeth, eyes, brows, nose,
ears). ``PART_FLIP[c]`` is the class that ``c`` becomes in a horizontally flipped image, so flipped
labels are ``PART_FLIP[np.fliplr(parts)]``.
"""
from __future__ import annotations

import numpy as np

PART_NAMES: list[str] = [
    "background",       # 0
    "hair",             # 1
    "face_neck",        # 2
    "torso",            # 3
    "left_upper_arm",   # 4
    "right_upper_arm",  # 5
    "left_lower_arm",   # 6
    "right_lower_arm",  # 7
    "left_hand",        # 8
    "right_hand",       # 9
    "left_upper_leg",   # 10
    "right_upper_leg",  # 11
    "left_lower_leg",   # 12
    "right_lower_leg",  # 13
    "left_foot",        # 14
    "right_foot",       # 15
    "upper_clothing",   # 16
    "lower_clothing",   # 17
    "left_shoe",        # 18
    "right_shoe",       # 19
    "upper_lip",        # 20
    "lower_lip",        # 21
    "teeth",            # 22
    "left_eye",         # 23
    "right_eye",        # 24
    "left_eyebrow",     # 25
    "right_eyebrow",    # 26
    "nose",             # 27
    "ears",             # 28
]
NUM_PARTS = len(PART_NAMES)
PART_INDEX: dict[str, int] = {n: i for i, n in enumerate(PART_NAMES)}


def _flip() -> np.ndarray:
    out = np.arange(NUM_PARTS, dtype=np.int64)
    for i, name in enumerate(PART_NAMES):
        if name.startswith("left_"):
            out[i] = PART_INDEX["right_" + name[5:]]
        elif name.startswith("right_"):
            out[i] = PART_INDEX["left_" + name[6:]]
    return out


PART_FLIP: np.ndarray = _flip()

# Palette (RGB): left parts warm/saturated, right parts their cooler counterparts; face classes bright.
PART_COLORS: np.ndarray = np.array([
    [0, 0, 0],        # background
    [120, 70, 30],    # hair
    [250, 200, 160],  # face_neck
    [230, 150, 60],   # torso
    [220, 40, 40],    # left_upper_arm
    [40, 90, 220],    # right_upper_arm
    [250, 120, 120],  # left_lower_arm
    [120, 160, 250],  # right_lower_arm
    [250, 220, 0],    # left_hand
    [0, 220, 220],    # right_hand
    [160, 0, 80],     # left_upper_leg
    [0, 120, 80],     # right_upper_leg
    [220, 80, 170],   # left_lower_leg
    [60, 200, 120],   # right_lower_leg
    [140, 110, 0],    # left_foot
    [0, 110, 140],    # right_foot
    [150, 150, 150],  # upper_clothing
    [80, 80, 110],    # lower_clothing
    [110, 40, 0],     # left_shoe
    [0, 50, 100],     # right_shoe
    [230, 0, 120],    # upper_lip
    [150, 0, 60],     # lower_lip
    [255, 255, 255],  # teeth
    [255, 140, 0],    # left_eye
    [0, 200, 255],    # right_eye
    [190, 100, 0],    # left_eyebrow
    [0, 80, 200],     # right_eyebrow
    [255, 90, 60],    # nose
    [180, 120, 255],  # ears
], dtype=np.uint8)


def _check() -> None:
    assert NUM_PARTS == 29 and PART_COLORS.shape == (29, 3)
    assert np.array_equal(PART_FLIP[PART_FLIP], np.arange(NUM_PARTS))
    assert len({tuple(c) for c in PART_COLORS.tolist()}) == NUM_PARTS, "palette colours must differ"


_check()

__all__ = ["PART_NAMES", "PART_INDEX", "NUM_PARTS", "PART_FLIP", "PART_COLORS"]
