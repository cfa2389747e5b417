"""The face: a random face template (2-D positions of the 243 face landmarks) and the face atlas
(part labels and albedo painted from the same template).

Template coordinates ``(a, b)`` are on the head ellipsoid's unit sphere: ``a`` towards the person's
left, ``b`` up, the front surface point being ``(a, b, sqrt(1 - a^2 - b^2))`` times the head radii.
Painting the atlas from the same polygons that define the landmarks makes the landmarks sit exactly
on the painted features (eye corners on the eye, lip contours on the lips).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from humans.shared.humans.keypoints import FACE, KEYPOINT_NAMES
from humans.shared.humans.parts import PART_INDEX

ATLAS_RES = 256
FACE_NAMES = [KEYPOINT_NAMES[i] for i in FACE]


@dataclass
class FaceParams:
    eye_x: float        # eye centre |a|
    eye_y: float        # eye centre b
    eye_w: float        # eye half width
    eye_open: float     # upper lid height
    eye_tilt: float     # outer corner raise
    gaze: tuple[float, float]
    brow_y: float
    brow_arch: float
    brow_thick: float
    nose_tip_y: float
    nose_w: float
    nose_len: float     # protrusion (metres)
    mouth_y: float
    mouth_w: float
    upper_lip: float
    lower_lip: float
    mouth_open: float
    smile: float
    chin_y: float
    jaw_w: float
    hair_front: float   # hairline height at the centre
    hair_temple: float  # hairline height at the temples
    hair_back: float    # lowest hair at the back of the head
    bald: bool
    iris_rgb: tuple[float, float, float]
    lip_rgb: tuple[float, float, float]


def sample_face(rng: np.random.Generator, symmetric: bool = False) -> FaceParams:
    return FaceParams(
        eye_x=rng.uniform(0.33, 0.40), eye_y=rng.uniform(0.0, 0.08), eye_w=rng.uniform(0.11, 0.14),
        eye_open=rng.uniform(0.02, 0.065), eye_tilt=rng.uniform(-0.01, 0.02),
        gaze=(0.0, 0.0) if symmetric else (rng.uniform(-0.35, 0.35), rng.uniform(-0.2, 0.2)),
        brow_y=rng.uniform(0.19, 0.24), brow_arch=rng.uniform(0.01, 0.04), brow_thick=rng.uniform(0.03, 0.055),
        nose_tip_y=rng.uniform(-0.32, -0.24), nose_w=rng.uniform(0.85, 1.2), nose_len=rng.uniform(0.015, 0.028),
        mouth_y=rng.uniform(-0.56, -0.5), mouth_w=rng.uniform(0.2, 0.27), upper_lip=rng.uniform(0.03, 0.05),
        lower_lip=rng.uniform(0.04, 0.065),
        mouth_open=0.0 if rng.random() < 0.55 else rng.uniform(0.01, 0.08), smile=rng.uniform(-0.02, 0.05),
        chin_y=rng.uniform(-0.93, -0.86), jaw_w=rng.uniform(0.86, 0.94),
        hair_front=rng.uniform(0.42, 0.6), hair_temple=rng.uniform(0.05, 0.3), hair_back=rng.uniform(-0.8, -0.35),
        bald=bool(rng.random() < 0.08),
        iris_rgb=tuple(rng.choice([[0.25, 0.15, 0.08], [0.12, 0.08, 0.05], [0.2, 0.35, 0.55],
                                   [0.25, 0.4, 0.25], [0.4, 0.3, 0.15]]) * rng.uniform(0.8, 1.2)),
        lip_rgb=(rng.uniform(0.55, 0.8), rng.uniform(0.2, 0.38), rng.uniform(0.25, 0.4)),
    )


def hairline(a: np.ndarray, fp: FaceParams) -> np.ndarray:
    """Front hairline height b at horizontal position a."""
    return fp.hair_front + (fp.hair_temple - fp.hair_front) * np.clip(np.abs(a) / 0.9, 0, 1) ** 2


def hair_mask(p: np.ndarray, fp: FaceParams) -> np.ndarray:
    """True where the head's unit-sphere point p [N, 3] (a, b, c) is covered by painted hair."""
    if fp.bald:
        return np.zeros(len(p), dtype=bool)
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    az = np.abs(np.arctan2(a, c))
    t = np.clip((az - np.radians(60)) / np.radians(50), 0, 1)
    bound = (1 - t) * hairline(np.clip(a, -0.9, 0.9), fp) + t * fp.hair_back
    return b > bound


def face_template(fp: FaceParams) -> dict[str, tuple[float, float]]:
    """(a, b) of every face landmark, by name."""
    pts: dict[str, tuple[float, float]] = {}

    def sym(prefix: str, values: list[tuple[float, float]]) -> None:
        """values from the person's right to left (len 2*half+1)."""
        half = len(values) // 2
        for i, v in enumerate(values):
            k = i - half
            name = f"{prefix}_c" if k == 0 else (f"{prefix}_r{-k:02d}" if k < 0 else f"{prefix}_l{k:02d}")
            pts[name] = v

    # jaw: ear level on the right, round the chin, to the left
    phi = np.linspace(-np.pi / 2, np.pi / 2, 33)
    top = -0.05
    sym("face_jaw", [(fp.jaw_w * np.sin(f), top - (top - fp.chin_y) * np.cos(f) ** 1.3) for f in phi])
    for side, s in (("right", -1.0), ("left", 1.0)):
        # eye: 0 outer corner, 1..8 upper lid outer->inner, 9 inner corner, 10..17 lower lid inner->outer
        ex, ey, ew = s * fp.eye_x, fp.eye_y, fp.eye_w
        outer = np.array([ex + s * ew, ey + fp.eye_tilt])
        inner = np.array([ex - s * ew, ey - 0.3 * fp.eye_tilt])
        ts = np.linspace(0, 1, 10)
        for i, t in enumerate(ts):  # upper lid 0..9
            p = outer + t * (inner - outer)
            pts[f"face_{side}_eye_{i:02d}"] = (p[0], p[1] + fp.eye_open * np.sin(np.pi * t) ** 0.8)
        for j, t in enumerate(ts[1:-1][::-1]):  # lower lid 10..17 inner->outer
            p = outer + t * (inner - outer)
            pts[f"face_{side}_eye_{10 + j:02d}"] = (p[0], p[1] - 0.55 * fp.eye_open * np.sin(np.pi * t))
        # iris: centre + rim (0 at the top, walking towards the nose)
        ic = np.array([ex + fp.gaze[0] * ew, ey + fp.gaze[1] * fp.eye_open])  # both eyes look the same way
        ri = 0.42 * ew
        pts[f"face_{side}_iris_center"] = (ic[0], ic[1])
        for k in range(8):
            ang = np.pi / 2 - k * np.pi / 4
            pts[f"face_{side}_iris_{k}"] = (ic[0] - s * ri * np.cos(ang), ic[1] + ri * np.sin(ang))
        # brow: upper edge 0..8 outer->inner, lower edge 0..6
        b_outer = s * (fp.eye_x + fp.eye_w + 0.04)
        b_inner = s * (fp.eye_x - fp.eye_w - 0.03)
        tb = np.linspace(0, 1, 9)
        upper = [(b_outer + t * (b_inner - b_outer),
                  fp.brow_y + fp.brow_arch * np.sin(np.pi * t ** 0.8) - 0.02 * (1 - t)) for t in tb]
        for i, p in enumerate(upper):
            pts[f"face_{side}_brow_upper_{i}"] = p
        for i, t in enumerate(tb[1:8]):
            x, y = upper[i + 1]
            pts[f"face_{side}_brow_lower_{i}"] = (x, y - fp.brow_thick * (0.6 + 0.4 * t))
        # cheeks 3x3 (col 0 nearest the nose, row 0 highest)
        for r in range(3):
            for c in range(3):
                pts[f"face_{side}_cheek_{r}{c}"] = (s * (0.28 + 0.17 * c), fp.eye_y - 0.17 - 0.12 * r)
        pts[f"face_{side}_temple"] = (s * 0.8, fp.eye_y + 0.14)
        # nostrils: 6 around each opening, starting at the medial top
        nc = np.array([s * 0.055 * fp.nose_w, fp.nose_tip_y - 0.035])
        for k in range(6):
            ang = np.pi / 2 + k * np.pi / 3
            pts[f"face_{side}_nostril_{k}"] = (nc[0] - s * 0.03 * fp.nose_w * np.cos(ang), nc[1] + 0.012 * np.sin(ang))
    # nose bridge (top -> tip) and lower nose (right -> left)
    for i, t in enumerate(np.linspace(0, 1, 7)):
        pts[f"face_nose_bridge_{i}"] = (0.0, fp.eye_y + 0.02 + t * (fp.nose_tip_y - fp.eye_y - 0.02))
    xs = np.linspace(-0.16, 0.16, 9) * fp.nose_w
    sym("face_nose_lower", [(x, fp.nose_tip_y - 0.075 + 0.05 * (abs(x) / 0.16 / fp.nose_w) ** 1.5) for x in xs])
    # lips
    my, mw, mo, sm = fp.mouth_y, fp.mouth_w, fp.mouth_open, fp.smile
    pts["face_lip_outer_corner_r"] = (-mw, my + sm)
    pts["face_lip_outer_corner_l"] = (mw, my + sm)
    t_out = np.linspace(-1, 1, 13)[1:-1]
    sym("face_lip_outer_upper", [(mw * t, my + mo / 2 + fp.upper_lip * np.sqrt(1 - t * t)
                                  - 0.012 * np.exp(-(t / 0.18) ** 2) + sm * t * t) for t in t_out])
    sym("face_lip_outer_lower", [(mw * t, my - mo / 2 - fp.lower_lip * np.sqrt(1 - t * t) + sm * t * t)
                                 for t in t_out])
    iw = 0.82 * mw
    pts["face_lip_inner_corner_r"] = (-iw, my + 0.7 * sm)
    pts["face_lip_inner_corner_l"] = (iw, my + 0.7 * sm)
    t_in = np.linspace(-1, 1, 9)[1:-1]
    sym("face_lip_inner_upper", [(iw * t, my + mo / 2 * np.sqrt(1 - t * t) + 0.004 * (1 - t * t) + 0.7 * sm * t * t)
                                 for t in t_in])
    sym("face_lip_inner_lower", [(iw * t, my - mo / 2 * np.sqrt(1 - t * t) - 0.004 * (1 - t * t) + 0.7 * sm * t * t)
                                 for t in t_in])
    # hairline, forehead
    xs = np.linspace(-0.85, 0.85, 17)
    sym("face_hairline", [(x, float(hairline(np.array(x), fp))) for x in xs])
    for r in range(3):
        for name, x in (("r02", -0.3), ("r01", -0.15), ("c", 0.0), ("l01", 0.15), ("l02", 0.3)):
            lo, hi = fp.brow_y + fp.brow_arch + 0.06, float(hairline(np.array(x), fp)) - 0.03
            pts[f"face_forehead_{r}_{name}"] = (x, lo + (hi - lo) * r / 2)
    pts["face_glabella"] = (0.0, fp.brow_y)
    pts["face_philtrum"] = (0.0, 0.5 * (fp.nose_tip_y - 0.075 + my + mo / 2 + fp.upper_lip))
    ml = my - mo / 2 - fp.lower_lip - 0.07
    pts["face_mentolabial"] = (0.0, ml)
    pts["face_pogonion"] = (0.0, 0.5 * (ml + fp.chin_y))
    missing = set(FACE_NAMES) - set(pts)
    assert not missing, f"face template misses {sorted(missing)[:5]}"
    return {n: (float(pts[n][0]), float(pts[n][1])) for n in FACE_NAMES}


def _poly(pts: dict, names: list[str]) -> list[tuple[float, float]]:
    """Template points -> atlas pixel coordinates (a right, b up -> image x right, y down)."""
    s = (ATLAS_RES - 1) / 2.0
    return [((pts[n][0] + 1) * s, (1 - pts[n][1]) * s) for n in names]


def face_atlas(fp: FaceParams, pts: dict[str, tuple[float, float]], skin: np.ndarray, hair: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Paint the face features: part label atlas (uint8, 0 = plain face skin) and albedo atlas (float RGB
    in [0, 1], only meaningful where the label is non-zero)."""
    lab = Image.new("L", (ATLAS_RES, ATLAS_RES), 0)
    col = Image.new("RGB", (ATLAS_RES, ATLAS_RES), (0, 0, 0))
    dl, dc = ImageDraw.Draw(lab), ImageDraw.Draw(col)

    def rgb(c) -> tuple[int, int, int]:
        return tuple(int(round(255 * float(np.clip(v, 0, 1)))) for v in c)

    brow_rgb = rgb(np.asarray(hair) * 0.8)
    for side in ("right", "left"):
        brow = ([f"face_{side}_brow_upper_{i}" for i in range(9)]
                + [f"face_{side}_brow_lower_{i}" for i in range(6, -1, -1)])
        dl.polygon(_poly(pts, brow), fill=PART_INDEX[f"{side}_eyebrow"])
        dc.polygon(_poly(pts, brow), fill=brow_rgb)
        eye = [f"face_{side}_eye_{i:02d}" for i in range(18)]
        dl.polygon(_poly(pts, eye), fill=PART_INDEX[f"{side}_eye"])
        dc.polygon(_poly(pts, eye), fill=rgb((0.93, 0.92, 0.88)))
        # iris and pupil, clipped to the eye opening
        (cx, cy), = _poly(pts, [f"face_{side}_iris_center"])
        r = fp.eye_w * 0.42 * (ATLAS_RES - 1) / 2.0
        eye_mask = Image.new("L", (ATLAS_RES, ATLAS_RES), 0)
        ImageDraw.Draw(eye_mask).polygon(_poly(pts, eye), fill=255)
        disc = Image.new("L", (ATLAS_RES, ATLAS_RES), 0)
        ImageDraw.Draw(disc).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        col.paste(rgb(fp.iris_rgb), mask=ImageChops.multiply(disc, eye_mask))
        pupil = Image.new("L", (ATLAS_RES, ATLAS_RES), 0)
        rp = 0.45 * r
        ImageDraw.Draw(pupil).ellipse([cx - rp, cy - rp, cx + rp, cy + rp], fill=255)
        col.paste((15, 12, 12), mask=ImageChops.multiply(pupil, eye_mask))
    lip_rgb = rgb(np.asarray(fp.lip_rgb) * 0.6 + np.asarray(skin) * 0.4)
    upper = (["face_lip_outer_corner_r"] + [f"face_lip_outer_upper_{k}" for k in
             [f"r{i:02d}" for i in range(5, 0, -1)] + ["c"] + [f"l{i:02d}" for i in range(1, 6)]]
             + ["face_lip_outer_corner_l", "face_lip_inner_corner_l"]
             + [f"face_lip_inner_upper_{k}" for k in [f"l{i:02d}" for i in range(3, 0, -1)] + ["c"]
                + [f"r{i:02d}" for i in range(1, 4)]] + ["face_lip_inner_corner_r"])
    lower = (["face_lip_outer_corner_r"] + [f"face_lip_outer_lower_{k}" for k in
             [f"r{i:02d}" for i in range(5, 0, -1)] + ["c"] + [f"l{i:02d}" for i in range(1, 6)]]
             + ["face_lip_outer_corner_l", "face_lip_inner_corner_l"]
             + [f"face_lip_inner_lower_{k}" for k in [f"l{i:02d}" for i in range(3, 0, -1)] + ["c"]
                + [f"r{i:02d}" for i in range(1, 4)]] + ["face_lip_inner_corner_r"])
    dl.polygon(_poly(pts, upper), fill=PART_INDEX["upper_lip"])
    dc.polygon(_poly(pts, upper), fill=lip_rgb)
    dl.polygon(_poly(pts, lower), fill=PART_INDEX["lower_lip"])
    dc.polygon(_poly(pts, lower), fill=lip_rgb)
    if fp.mouth_open > 0.005:
        inner = (["face_lip_inner_corner_r"] + [f"face_lip_inner_upper_{k}" for k in
                 [f"r{i:02d}" for i in range(3, 0, -1)] + ["c"] + [f"l{i:02d}" for i in range(1, 4)]]
                 + ["face_lip_inner_corner_l"] + [f"face_lip_inner_lower_{k}" for k in
                 [f"l{i:02d}" for i in range(3, 0, -1)] + ["c"] + [f"r{i:02d}" for i in range(1, 4)]])
        dl.polygon(_poly(pts, inner), fill=PART_INDEX["teeth"])
        dc.polygon(_poly(pts, inner), fill=rgb((0.9, 0.88, 0.8)))
        # the gap between the teeth rows
        (x0, y0), = _poly(pts, ["face_lip_inner_upper_c"])
        (x1, y1), = _poly(pts, ["face_lip_inner_lower_c"])
        (xl, _), = _poly(pts, ["face_lip_inner_corner_l"])
        (xr, _), = _poly(pts, ["face_lip_inner_corner_r"])
        ym = 0.5 * (y0 + y1)
        dc.rectangle([xr, ym - 0.15 * (y1 - y0), xl, ym + 0.15 * (y1 - y0)], fill=(70, 20, 25))
    return np.asarray(lab).copy(), np.asarray(col).astype(np.float32) / 255.0


def atlas_lookup(atlas: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Nearest-texel lookup of atlas [R, R, ...] at template coordinates ab [N, 2]."""
    s = (ATLAS_RES - 1) / 2.0
    x = np.clip(np.rint((ab[:, 0] + 1) * s), 0, ATLAS_RES - 1).astype(np.int64)
    y = np.clip(np.rint((1 - ab[:, 1]) * s), 0, ATLAS_RES - 1).astype(np.int64)
    return atlas[y, x]
