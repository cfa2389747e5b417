"""The 308-keypoint human layout shared by the synthetic generator and the pose head.

Layout (indices are fixed; never reorder):

* ``BODY``  0..24   25 body joints in OpenPose BODY_25 order (nose, neck, shoulders, elbows, wrists,
  mid-hip, hips, knees, ankles, eyes, ears, big toes, small toes, heels).
* ``HANDS`` 25..64  20 per hand, left hand first (25..44) then right hand (45..64). Each hand is
  5 fingers x 4 joints in COCO-WholeBody order (thumb1..4 = CMC, MCP, IP, tip; forefinger, middle,
  ring, pinky 1..4 = MCP, PIP, DIP, tip). The hand root is the body wrist (no separate keypoint).
* ``FACE``  65..307 243 dense face landmarks sampled along the face's contours: jaw (33), brows
  (2 x 16: 9 along the upper edge, 7 along the lower edge), nose bridge (7), lower nose (9), eyes
  (2 x 18), outer lips (24), inner lips (16), irises (2 x 9: centre + 8 on the rim), nostrils (2 x 6),
  hairline (17), cheeks (2 x 9), forehead (15), temples (2), midline (4). Every other point of the
  jaw, brow-upper, bridge, lower-nose and lip contours (and 6 of each eye's 18) is exactly one of the
  68 iBUG / COCO-WholeBody face points, so that data set maps in (``COCO_WHOLEBODY_TO_308``).

"Left" and "right" are the person's own sides (COCO convention). Names are unique; the flip
permutation is derived from names (``left`` <-> ``right``, and ``_l``/``_r`` suffixed indices of
symmetric contours), so a horizontally flipped image is labelled by ``keypoints[flip_index()]``.
"""
from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------- body
BODY_NAMES = [
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
]
_BODY_SKELETON = [
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12),
    (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21),
    (11, 22), (22, 23), (11, 24),
]
# COCO / COCO-WholeBody OKS sigmas for the joints COCO has; neck and mid-hip (absent in COCO) take
# the shoulder and hip values. Feet use COCO-WholeBody's (left/right values differ there, as in
# the official evaluation).
_BODY_SIGMAS = {
    "nose": 0.026, "neck": 0.079, "right_shoulder": 0.079, "right_elbow": 0.072, "right_wrist": 0.062,
    "left_shoulder": 0.079, "left_elbow": 0.072, "left_wrist": 0.062, "mid_hip": 0.107,
    "right_hip": 0.107, "right_knee": 0.087, "right_ankle": 0.089, "left_hip": 0.107,
    "left_knee": 0.087, "left_ankle": 0.089, "right_eye": 0.025, "left_eye": 0.025,
    "right_ear": 0.035, "left_ear": 0.035, "left_big_toe": 0.068, "left_small_toe": 0.066,
    "left_heel": 0.066, "right_big_toe": 0.092, "right_small_toe": 0.094, "right_heel": 0.094,
}

# -------------------------------------------------------------------------------------------- hands
FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
# COCO-WholeBody hand sigmas, points 1..20 (point 0, the hand root, is the body wrist here).
_HAND_SIGMAS = [0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022,
                0.026, 0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031]


def _hand_names(side: str) -> list[str]:
    return [f"{side}_{finger}{j}" for finger in FINGERS for j in range(1, 5)]


# --------------------------------------------------------------------------------------------- face
# iBUG-68 / COCO-WholeBody face sigmas (face point k has sigma _IBUG_SIGMAS[k]).
_IBUG_SIGMAS = [
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037,
    0.038, 0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013,
    0.015, 0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009,
    0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008,
    0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008,
    0.008, 0.01, 0.008,
]


def _sym(prefix: str, half: int) -> list[str]:
    """A symmetric open contour from the person's right to left: r{half}..r1, c, l1..l{half}."""
    return ([f"{prefix}_r{i:02d}" for i in range(half, 0, -1)] + [f"{prefix}_c"]
            + [f"{prefix}_l{i:02d}" for i in range(1, half + 1)])


def _build_face() -> tuple[list[str], dict[int, str], dict[str, float], list[tuple[str, str]]]:
    """Face names in layout order, iBUG index -> name, per-name sigma, and contour edges (by name)."""
    names: list[str] = []
    ibug: dict[int, str] = {}
    sigma: dict[str, float] = {}
    edges: list[tuple[str, str]] = []

    def contour(pts: list[str], closed: bool = False) -> None:
        names.extend(pts)
        edges.extend(zip(pts[:-1], pts[1:]))
        if closed:
            edges.append((pts[-1], pts[0]))

    def dense_from_ibug(pts: list[str], first_ibug: int, closed: bool = False) -> None:
        """Every other point of ``pts`` is an iBUG point (first_ibug, first_ibug+1, ...); the points
        between take the mean sigma of their two neighbours."""
        n = len(pts)
        for k in range(0, n, 2):
            ibug[first_ibug + k // 2] = pts[k]
            sigma[pts[k]] = _IBUG_SIGMAS[first_ibug + k // 2]
        for k in range(1, n, 2):
            nxt = k + 1 if k + 1 < n else 0
            sigma[pts[k]] = 0.5 * (sigma[pts[k - 1]] + sigma[pts[nxt]])

    # jaw: 33 points, iBUG 0 (person's right, ear level) .. 16 (left)
    jaw = _sym("face_jaw", 16)
    contour(jaw)
    dense_from_ibug(jaw, 0)
    # brows: upper edge 9 points outer -> inner on each side (iBUG 17..21 right outer->inner,
    # 22..26 left inner->outer), lower edge 7 points outer -> inner.
    for side in ("right", "left"):
        upper = [f"face_{side}_brow_upper_{i}" for i in range(9)]
        lower = [f"face_{side}_brow_lower_{i}" for i in range(7)]
        contour(upper)
        names.extend(lower)
        edges.extend([(upper[0], lower[0])] + list(zip(lower[:-1], lower[1:])) + [(lower[-1], upper[-1])])
        order = upper if side == "right" else upper[::-1]
        for k in range(5):
            ibug[(17 if side == "right" else 22) + k] = order[2 * k]
        for k in range(0, 9, 2):
            ib = [i for i, nm in ibug.items() if nm == upper[k]][0]
            sigma[upper[k]] = _IBUG_SIGMAS[ib]
        for k in range(1, 9, 2):
            sigma[upper[k]] = 0.5 * (sigma[upper[k - 1]] + sigma[upper[k + 1]])
        for k in range(7):
            sigma[lower[k]] = 0.5 * (sigma[upper[k + 1]] + sigma[upper[min(k + 2, 8)]])
    # nose bridge: 7 points top -> tip (iBUG 27..30 at 0, 2, 4, 6)
    bridge = [f"face_nose_bridge_{i}" for i in range(7)]
    contour(bridge)
    dense_from_ibug(bridge, 27)
    # lower nose: 9 points right -> left (iBUG 31..35)
    nose_lower = _sym("face_nose_lower", 4)
    contour(nose_lower)
    dense_from_ibug(nose_lower, 31)
    # eyes: 18 points, 0 = outer corner, 1..8 upper lid outer -> inner, 9 = inner corner,
    # 10..17 lower lid inner -> outer. iBUG right eye 36..41 = 0, 3, 6, 9, 12, 15; left eye 42..47 =
    # 9, 6, 3, 0, 15, 12 (iBUG walks the left eye from its inner corner).
    for side, ib_idx in (("right", (0, 3, 6, 9, 12, 15)), ("left", (9, 6, 3, 0, 15, 12))):
        eye = [f"face_{side}_eye_{i:02d}" for i in range(18)]
        contour(eye, closed=True)
        first = 36 if side == "right" else 42
        for k, i in enumerate(ib_idx):
            ibug[first + k] = eye[i]
            sigma[eye[i]] = _IBUG_SIGMAS[first + k]
        for i in range(18):
            if eye[i] not in sigma:
                lo, hi = (i // 3) * 3, ((i // 3) * 3 + 3) % 18
                sigma[eye[i]] = 0.5 * (sigma[eye[lo]] + sigma[eye[hi]])
    # outer lips: 24 points: 0 right corner, 1..11 upper lip right -> left, 12 left corner,
    # 13..23 lower lip left -> right (iBUG 48..59 at the even indices)
    outer = (["face_lip_outer_corner_r"] + _sym("face_lip_outer_upper", 5) + ["face_lip_outer_corner_l"]
             + _sym("face_lip_outer_lower", 5)[::-1])
    contour(outer, closed=True)
    dense_from_ibug(outer, 48, closed=True)
    # inner lips: 16 points, same walk (iBUG 60..67 at the even indices)
    inner = (["face_lip_inner_corner_r"] + _sym("face_lip_inner_upper", 3) + ["face_lip_inner_corner_l"]
             + _sym("face_lip_inner_lower", 3)[::-1])
    contour(inner, closed=True)
    dense_from_ibug(inner, 60, closed=True)
    # irises: centre + 8 on the rim (rim 0 at the top, walking towards the nose then down)
    for side in ("right", "left"):
        centre = f"face_{side}_iris_center"
        rim = [f"face_{side}_iris_{i}" for i in range(8)]
        names.append(centre)
        contour(rim, closed=True)
        sigma[centre] = 0.009
        for r in rim:
            sigma[r] = 0.010
    # nostrils: 6 around each nostril opening
    for side in ("right", "left"):
        pts = [f"face_{side}_nostril_{i}" for i in range(6)]
        contour(pts, closed=True)
        for p in pts:
            sigma[p] = 0.010
    # hairline: 17 points right -> left over the forehead
    hair = _sym("face_hairline", 8)
    contour(hair)
    for p in hair:
        sigma[p] = 0.040
    # cheeks: 3 x 3 grid per side (row 0 = highest, col 0 = nearest the nose)
    for side in ("right", "left"):
        for r in range(3):
            row = [f"face_{side}_cheek_{r}{c}" for c in range(3)]
            contour(row)
            for p in row:
                sigma[p] = 0.030
    # forehead: 3 rows x 5 columns (row 0 = lowest)
    for r in range(3):
        row = [f"face_forehead_{r}_r02", f"face_forehead_{r}_r01", f"face_forehead_{r}_c",
               f"face_forehead_{r}_l01", f"face_forehead_{r}_l02"]
        contour(row)
        for p in row:
            sigma[p] = 0.035
    for side in ("right", "left"):
        names.append(f"face_{side}_temple")
        sigma[f"face_{side}_temple"] = 0.040
    for p, s in (("face_glabella", 0.012), ("face_philtrum", 0.009), ("face_mentolabial", 0.015),
                 ("face_pogonion", 0.020)):
        names.append(p)
        sigma[p] = s
    edges.extend([("face_glabella", "face_nose_bridge_0"), ("face_nose_lower_c", "face_philtrum"),
                  ("face_philtrum", "face_lip_outer_upper_c"), ("face_lip_outer_lower_c", "face_mentolabial"),
                  ("face_mentolabial", "face_pogonion"), ("face_pogonion", "face_jaw_c")])
    for side, sfx in (("right", "r"), ("left", "l")):
        edges.extend([(f"face_{side}_temple", f"face_{side}_brow_upper_0"),
                      (f"face_{side}_temple", f"face_hairline_{sfx}08"),
                      (f"face_{side}_iris_center", f"face_{side}_iris_0")])
    return names, ibug, sigma, edges


_FACE_NAMES, _IBUG_TO_NAME, _FACE_SIGMAS, _FACE_EDGES = _build_face()
LEFT_HAND_NAMES = _hand_names("left")
RIGHT_HAND_NAMES = _hand_names("right")
HAND_NAMES = LEFT_HAND_NAMES + RIGHT_HAND_NAMES
FACE_NAMES = _FACE_NAMES

KEYPOINT_NAMES: list[str] = BODY_NAMES + HAND_NAMES + FACE_NAMES
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
KEYPOINT_INDEX: dict[str, int] = {n: i for i, n in enumerate(KEYPOINT_NAMES)}

BODY = range(0, 25)
HANDS = range(25, 65)
LEFT_HAND = range(25, 45)
RIGHT_HAND = range(45, 65)
FACE = range(65, 308)


def _skeleton() -> list[tuple[int, int]]:
    sk = list(_BODY_SKELETON)
    for side in ("left", "right"):
        wrist = KEYPOINT_INDEX[f"{side}_wrist"]
        for finger in FINGERS:
            chain = [wrist] + [KEYPOINT_INDEX[f"{side}_{finger}{j}"] for j in range(1, 5)]
            sk.extend(zip(chain[:-1], chain[1:]))
    sk.extend((KEYPOINT_INDEX[a], KEYPOINT_INDEX[b]) for a, b in _FACE_EDGES)
    return sk


SKELETON: list[tuple[int, int]] = _skeleton()


def _mirror_name(name: str) -> str:
    """The name of the keypoint a horizontal flip maps ``name`` onto."""
    if "left" in name:
        return name.replace("left", "right")
    if "right" in name:
        return name.replace("right", "left")
    parts = name.split("_")
    last = parts[-1]
    if len(last) == 3 and last[0] in "lr" and last[1:].isdigit():
        parts[-1] = ("r" if last[0] == "l" else "l") + last[1:]
        return "_".join(parts)
    if last in ("l", "r"):  # lip corners
        parts[-1] = "r" if last == "l" else "l"
        return "_".join(parts)
    return name


def flip_index() -> np.ndarray:
    """Permutation p (int64 [308]) such that ``kps_flipped = kps[p]`` after mirroring x."""
    return np.array([KEYPOINT_INDEX[_mirror_name(n)] for n in KEYPOINT_NAMES], dtype=np.int64)


FLIP_PAIRS: list[tuple[int, int]] = sorted({(min(i, int(j)), max(i, int(j)))
                                           for i, j in enumerate(flip_index()) if i != j})

SIGMAS: np.ndarray = np.array(
    [_BODY_SIGMAS[n] for n in BODY_NAMES]
    + [_HAND_SIGMAS[i % 20] for i in range(40)]
    + [_FACE_SIGMAS[n] for n in FACE_NAMES], dtype=np.float64)

# -------------------------------------------------------------------------------- COCO-WholeBody
COCO_WHOLEBODY_NAMES: list[str] = (
    ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
     "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
     "right_knee", "left_ankle", "right_ankle", "left_big_toe", "left_small_toe", "left_heel",
     "right_big_toe", "right_small_toe", "right_heel"]
    + [f"face-{i}" for i in range(68)]
    + ["left_hand_root"] + LEFT_HAND_NAMES + ["right_hand_root"] + RIGHT_HAND_NAMES
)


def _coco_wholebody_map() -> np.ndarray:
    out = np.full(133, -1, dtype=np.int64)
    for k, name in enumerate(COCO_WHOLEBODY_NAMES):
        if name.startswith("face-"):
            out[k] = KEYPOINT_INDEX[_IBUG_TO_NAME[int(name[5:])]]
        elif name in KEYPOINT_INDEX:
            out[k] = KEYPOINT_INDEX[name]
        # the hand roots duplicate the body wrists: they stay -1 (the wrist comes from the body)
    return out


# COCO_WHOLEBODY_TO_308[k] = index in this layout of COCO-WholeBody keypoint k (0..132), or -1.
COCO_WHOLEBODY_TO_308: np.ndarray = _coco_wholebody_map()
# COCO-17 body keypoints are the first 17 of COCO-WholeBody.
COCO17_TO_308: np.ndarray = COCO_WHOLEBODY_TO_308[:17].copy()


def coco_wholebody_to_308(kps133: np.ndarray) -> np.ndarray:
    """Map COCO-WholeBody keypoints [..., 133, C] into this layout [..., 308, C] (zeros where absent;
    with (x, y, v) triplets that means v = 0, "not labelled")."""
    kps133 = np.asarray(kps133)
    if kps133.shape[-2] != 133:
        raise ValueError(f"expected 133 COCO-WholeBody keypoints on axis -2, got shape {kps133.shape}")
    out = np.zeros(kps133.shape[:-2] + (NUM_KEYPOINTS, kps133.shape[-1]), dtype=kps133.dtype)
    src = np.nonzero(COCO_WHOLEBODY_TO_308 >= 0)[0]
    out[..., COCO_WHOLEBODY_TO_308[src], :] = kps133[..., src, :]
    return out


def _check() -> None:
    assert NUM_KEYPOINTS == 308, NUM_KEYPOINTS
    assert len(BODY_NAMES) == 25 and len(HAND_NAMES) == 40 and len(FACE_NAMES) == 243
    assert len(set(KEYPOINT_NAMES)) == NUM_KEYPOINTS, "keypoint names must be unique"
    p = flip_index()
    assert np.array_equal(p[p], np.arange(NUM_KEYPOINTS)), "flip must be an involution"
    assert SIGMAS.shape == (NUM_KEYPOINTS,) and (SIGMAS > 0).all()
    assert len(set(COCO_WHOLEBODY_TO_308[COCO_WHOLEBODY_TO_308 >= 0].tolist())) == 131


_check()

__all__ = [
    "KEYPOINT_NAMES", "KEYPOINT_INDEX", "NUM_KEYPOINTS", "BODY", "HANDS", "LEFT_HAND", "RIGHT_HAND",
    "FACE", "BODY_NAMES", "HAND_NAMES", "FACE_NAMES", "FINGERS", "SKELETON", "FLIP_PAIRS",
    "flip_index", "SIGMAS", "COCO_WHOLEBODY_NAMES", "COCO_WHOLEBODY_TO_308", "COCO17_TO_308",
    "coco_wholebody_to_308",
]
