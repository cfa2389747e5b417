"""The articulated figure: body shape, pose sampling within joint limits, forward kinematics, the
smooth primitives that make the body, its clothing and materials, and the 308 keypoints in 3-D.

Body frame (metres): x towards the person's left, y up, z forward (the way the person faces); the
origin is the pelvis centre. A joint's rotation is ``Rz(abduction) @ Rx(flexion) @ Ry(twist)`` in its
parent's frame with side sign ``s`` (+1 left, -1 right) on abduction and twist, so equal parameters
on both sides give a mirror-symmetric pose.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from humans.shared.synth.face import FaceParams, face_atlas, face_template, sample_face
from humans.shared.synth.geometry import Prim, frame_along, intersect, rot_axis, rot_x, rot_y, rot_z
from humans.shared.humans.keypoints import FINGERS, KEYPOINT_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS
from humans.shared.humans.parts import PART_INDEX

SIDES = (("l", "left", 1.0), ("r", "right", -1.0))
P = PART_INDEX
D2R = np.pi / 180.0


@dataclass
class Person:
    """A posed, dressed person in its body frame."""

    prims: list[Prim]
    kp_pos: np.ndarray                 # (308, 3) body frame
    kp_owners: list[tuple[str, ...]]   # primitive names a keypoint is seen on
    kp_margin: np.ndarray              # (308,) how far (m) its own primitives' surface may lie in front
                                       # of a keypoint along the line of sight while it counts as visible
    materials: dict
    face: FaceParams
    atlas_label: np.ndarray
    atlas_rgb: np.ndarray
    head_radii: np.ndarray
    joints: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- colours
_SKIN = np.array([[0.96, 0.80, 0.69], [0.87, 0.67, 0.53], [0.76, 0.55, 0.40], [0.58, 0.39, 0.26],
                  [0.40, 0.26, 0.17], [0.27, 0.17, 0.11]])
_HAIR = np.array([[0.04, 0.03, 0.03], [0.14, 0.09, 0.06], [0.32, 0.2, 0.11], [0.72, 0.58, 0.34],
                  [0.5, 0.22, 0.09], [0.62, 0.62, 0.6], [0.9, 0.88, 0.82]])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def sample_cloth(rng: np.random.Generator) -> dict:
    base = _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.12, 0.95))
    other = _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.1, 0.95))
    pattern = rng.choice(["solid", "stripes", "checker", "noise", "dots"], p=[0.4, 0.2, 0.12, 0.18, 0.1])
    axis = rng.normal(size=3) if rng.random() < 0.4 else np.array([0.0, 1.0, 0.0])
    return {"rgb": base, "rgb2": other, "pattern": str(pattern), "freq": float(rng.uniform(6, 30)),
            "axis": axis / np.linalg.norm(axis), "phase": float(rng.uniform(0, 2 * np.pi)),
            "dirs": rng.normal(size=(3, 3)), "phases": rng.uniform(0, 2 * np.pi, 3)}


def material_rgb(mat: dict, p: np.ndarray) -> np.ndarray:
    """Albedo [N, 3] of a solid-textured material at body-frame points p [N, 3]."""
    base, other = np.asarray(mat["rgb"], dtype=np.float64), np.asarray(mat["rgb2"], dtype=np.float64)
    kind, f = mat["pattern"], mat["freq"]
    if kind == "solid":
        w = np.zeros(len(p))
    elif kind == "stripes":
        w = (np.sin(2 * np.pi * f * (p @ mat["axis"]) + mat["phase"]) > 0).astype(np.float64)
    elif kind == "checker":
        q = np.floor(p * f * 0.5).astype(np.int64)
        w = ((q[:, 0] + q[:, 1] + q[:, 2]) & 1).astype(np.float64)
    elif kind == "noise":
        w = np.zeros(len(p))
        for k in range(3):
            w += np.sin(f * 0.5 * (p @ mat["dirs"][k]) * (k + 1) + mat["phases"][k]) / (k + 1)
        w = np.clip(0.5 + 0.35 * w, 0, 1)
    else:  # dots
        q = p * f * 0.5
        w = (np.linalg.norm(q - np.round(q), axis=1) < 0.3).astype(np.float64)
    return base[None] * (1 - w[:, None]) + other[None] * w[:, None]


# ------------------------------------------------------------------------------------------- shape
@dataclass
class Shape:
    scale: float
    girth: float
    lumbar: float
    thorax: float
    upper_chest: float
    neck: float
    shoulder_w: float
    hip_w: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    hand: float
    foot: float
    head: np.ndarray


def sample_shape(rng: np.random.Generator) -> Shape:
    s = rng.uniform(0.82, 1.12)
    g = rng.uniform(0.8, 1.35)

    def j(x: float, r: float = 0.06) -> float:
        return x * s * rng.uniform(1 - r, 1 + r)

    head = np.array([0.075, 0.102, 0.094]) * rng.uniform(0.93, 1.07, 3) * (0.6 + 0.4 * s)
    return Shape(scale=s, girth=g, lumbar=j(0.11), thorax=j(0.2), upper_chest=j(0.2), neck=j(0.085),
                 shoulder_w=j(0.17), hip_w=j(0.088), upper_arm=j(0.29), forearm=j(0.25), thigh=j(0.43),
                 shin=j(0.42), hand=j(1.0, 0.05), foot=j(1.0, 0.05), head=head)


# -------------------------------------------------------------------------------------------- pose
def _u(rng, lo, hi):
    return rng.uniform(lo, hi) * D2R


def sample_pose(rng: np.random.Generator, symmetric: bool = False) -> dict:
    """Joint angles (radians) within limits, from a few pose families."""
    family = str(rng.choice(["stand", "walk", "arms", "sit", "crouch", "random"],
                            p=[0.25, 0.2, 0.2, 0.12, 0.08, 0.15]))
    pose: dict = {"family": family}
    trunk = 0.0 if symmetric else 1.0
    pose["spine"] = (_u(rng, -8, 20), trunk * _u(rng, -12, 12), trunk * _u(rng, -20, 20))
    pose["chest"] = (_u(rng, -8, 15), trunk * _u(rng, -8, 8), trunk * _u(rng, -15, 15))
    pose["neck"] = (_u(rng, -15, 25), trunk * _u(rng, -12, 12), trunk * _u(rng, -30, 30))
    pose["head"] = (_u(rng, -20, 25), trunk * _u(rng, -15, 15), trunk * _u(rng, -40, 40))
    side_rng = [rng] if symmetric else [rng, rng]
    per_side = []
    for k, r in enumerate(side_rng):
        sp = {}
        if family == "stand":
            sp["shoulder"] = (_u(r, 3, 30), _u(r, -20, 30), _u(r, -30, 30))
            sp["elbow"] = _u(r, 0, 60)
            sp["hip"] = (_u(r, -3, 12), _u(r, -10, 15), _u(r, -15, 20))
            sp["knee"] = _u(r, 0, 15)
        elif family == "walk":
            sw = r.uniform(-35, 35) * (1 if k == 0 else -1)
            sp["shoulder"] = (_u(r, 4, 15), (sw + r.uniform(-8, 8)) * D2R, _u(r, -20, 20))
            sp["elbow"] = _u(r, 5, 70)
            sp["hip"] = (_u(r, -3, 8), (-sw + r.uniform(-8, 8)) * D2R, _u(r, -10, 10))
            sp["knee"] = _u(r, 0, 60)
        elif family == "arms":
            sp["shoulder"] = (_u(r, 10, 160), _u(r, -30, 120), _u(r, -50, 50))
            sp["elbow"] = _u(r, 0, 140)
            sp["hip"] = (_u(r, -3, 25), _u(r, -15, 30), _u(r, -20, 20))
            sp["knee"] = _u(r, 0, 40)
        elif family == "sit":
            sp["shoulder"] = (_u(r, 3, 40), _u(r, -10, 60), _u(r, -30, 30))
            sp["elbow"] = _u(r, 10, 110)
            sp["hip"] = (_u(r, -5, 25), _u(r, 70, 100), _u(r, -15, 15))
            sp["knee"] = _u(r, 60, 110)
        elif family == "crouch":
            sp["shoulder"] = (_u(r, 3, 50), _u(r, 0, 80), _u(r, -30, 30))
            sp["elbow"] = _u(r, 10, 120)
            sp["hip"] = (_u(r, 0, 30), _u(r, 80, 120), _u(r, -20, 20))
            sp["knee"] = _u(r, 90, 135)
        else:
            sp["shoulder"] = (_u(r, -10, 150), _u(r, -40, 150), _u(r, -60, 60))
            sp["elbow"] = _u(r, 0, 145)
            sp["hip"] = (_u(r, -10, 45), _u(r, -20, 110), _u(r, -30, 30))
            sp["knee"] = _u(r, 0, 130)
        sp["wrist"] = (_u(r, -45, 45), _u(r, -15, 25), _u(r, -60, 60))
        sp["ankle"] = _u(r, -20, 30)
        grip = r.uniform(0, 1) ** 1.5
        sp["fingers"] = np.clip(grip * np.array([1.0, 1.2, 0.9]) * 90 * D2R
                                + r.uniform(-12, 12, (5, 3)) * D2R, 0, 100 * D2R)
        sp["spread"] = _u(r, -4, 12)
        sp["thumb"] = (_u(r, -10, 40), r.uniform(0, 1))
        per_side.append(sp)
    if symmetric:
        per_side.append(per_side[0])
    pose["left"], pose["right"] = per_side
    if family in ("sit", "crouch"):
        pose["spine"] = (pose["spine"][0] + 10 * D2R,) + tuple(pose["spine"][1:])
    return pose


def _jr(abd: float, flex: float, twist: float, s: float) -> np.ndarray:
    return rot_z(s * abd) @ rot_x(-flex) @ rot_y(s * twist)


# -------------------------------------------------------------------------------------- clothing
def sample_outfit(rng: np.random.Generator) -> dict:
    shirtless = rng.random() < 0.06
    sleeve = float(rng.choice([0.0, rng.uniform(0.3, 0.9), 1.0, 1.0]))  # of the upper arm
    long_sleeve = sleeve >= 1.0 and rng.random() < 0.6
    return {
        "shirtless": bool(shirtless),
        "sleeve_upper": 0.0 if shirtless else sleeve,
        "sleeve_lower": float(rng.uniform(0.75, 1.0)) if (long_sleeve and not shirtless) else 0.0,
        "hem": float(rng.uniform(-0.1, 0.3)),
        "waist": float(rng.uniform(0.15, 0.45)),
        "leg_upper": float(rng.choice([rng.uniform(0.25, 0.8), 1.0, 1.0])),
        "leg_lower": float(rng.uniform(0.85, 1.0)) if rng.random() < 0.65 else 0.0,
        "shoes": bool(rng.random() < 0.9),
        "boot": float(rng.uniform(0.6, 0.9)) if rng.random() < 0.2 else 1.05,
        "long_hair": bool(rng.random() < 0.3),
        "bun": bool(rng.random() < 0.08),
    }


# ---------------------------------------------------------------------------------------- building
def _segment(name: str, a: np.ndarray, b: np.ndarray, ra: float, rb: float, hint: np.ndarray,
             scale=(1.0, 1.0, 1.0), **meta) -> Prim:
    """A round cone from joint a to joint b (local y along a->b, local x near ``hint``)."""
    S = np.asarray(scale, dtype=np.float64)
    L = float(np.linalg.norm(b - a))
    R = frame_along(b - a, hint)
    meta = {"kind": "segment", "length": L / S[1], **meta}
    return Prim(name, a.copy(), R, S, np.zeros(3), np.array([0.0, L / S[1], 0.0]), ra, rb, True, meta)


def build_person(rng: np.random.Generator, symmetric: bool = False) -> Person:
    sh = sample_shape(rng)
    pose = sample_pose(rng, symmetric)
    outfit = sample_outfit(rng)
    fp = sample_face(rng, symmetric)
    g = sh.girth
    tone = rng.uniform(0, len(_SKIN) - 1)
    k0 = min(int(tone), len(_SKIN) - 2)
    skin = _SKIN[k0] + (tone - k0) * (_SKIN[k0 + 1] - _SKIN[k0])
    hair = _HAIR[rng.integers(0, len(_HAIR))] * rng.uniform(0.85, 1.15)
    materials = {
        "skin": {"rgb": skin, "rgb2": skin * 0.93, "pattern": "noise", "freq": 25.0,
                 "axis": np.array([0, 1.0, 0]), "phase": 0.0, "dirs": rng.normal(size=(3, 3)),
                 "phases": rng.uniform(0, 6, 3)},
        "hair": {"rgb": hair, "rgb2": hair * 0.75, "pattern": "stripes", "freq": 90.0,
                 "axis": np.array([1.0, 0.15, 0.0]) / np.linalg.norm([1.0, 0.15, 0.0]), "phase": 0.0,
                 "dirs": np.eye(3), "phases": np.zeros(3)},
        "upper": sample_cloth(rng), "lower": sample_cloth(rng), "shoe": sample_cloth(rng),
        "nose": None,
    }
    materials["shoe"]["rgb"] = materials["shoe"]["rgb"] * 0.6
    ex, ey, ez = np.eye(3)

    # --- forward kinematics
    J: dict[str, np.ndarray] = {}
    Rr: dict[str, np.ndarray] = {}
    lean = (0.0 if symmetric else rng.uniform(-5, 5) * D2R)
    R_p = rot_z(lean) @ rot_x(rng.uniform(-5, 5) * D2R)
    J["pelvis"] = np.zeros(3)
    R_s = R_p @ rot_x(pose["spine"][0]) @ rot_z(pose["spine"][1]) @ rot_y(pose["spine"][2])
    J["spine"] = J["pelvis"] + R_p @ (ey * sh.lumbar)
    R_c = R_s @ rot_x(pose["chest"][0]) @ rot_z(pose["chest"][1]) @ rot_y(pose["chest"][2])
    J["chest"] = J["spine"] + R_s @ (ey * sh.thorax)
    J["neck_base"] = J["chest"] + R_c @ (ey * sh.upper_chest)
    R_n = R_c @ rot_x(pose["neck"][0]) @ rot_z(pose["neck"][1]) @ rot_y(pose["neck"][2])
    J["head_joint"] = J["neck_base"] + R_n @ (ey * sh.neck)
    R_h = R_n @ rot_x(pose["head"][0]) @ rot_z(pose["head"][1]) @ rot_y(pose["head"][2])
    J["head"] = J["head_joint"] + R_h @ np.array([0.0, sh.head[1] * 0.85, 0.012])
    Rr.update(pelvis=R_p, spine=R_s, chest=R_c, neck=R_n, head=R_h)
    for sfx, side, s in SIDES:
        sp = pose[side]
        J[f"shoulder_{sfx}"] = J["chest"] + R_c @ np.array([s * sh.shoulder_w, sh.upper_chest - 0.045 * sh.scale,
                                                             -0.01])
        R_sh = R_c @ _jr(*sp["shoulder"], s)
        J[f"elbow_{sfx}"] = J[f"shoulder_{sfx}"] + R_sh @ (-ey * sh.upper_arm)
        R_el = R_sh @ rot_x(-sp["elbow"])
        J[f"wrist_{sfx}"] = J[f"elbow_{sfx}"] + R_el @ (-ey * sh.forearm)
        wf, wd, wt = sp["wrist"]
        R_wr = R_el @ rot_y(s * wt) @ rot_z(-s * wf) @ rot_x(wd)
        J[f"hip_{sfx}"] = J["pelvis"] + R_p @ np.array([s * sh.hip_w, -0.06 * sh.scale, 0.0])
        R_hp = R_p @ _jr(*sp["hip"], s)
        J[f"knee_{sfx}"] = J[f"hip_{sfx}"] + R_hp @ (-ey * sh.thigh)
        R_kn = R_hp @ rot_x(sp["knee"])
        J[f"ankle_{sfx}"] = J[f"knee_{sfx}"] + R_kn @ (-ey * sh.shin)
        R_an = R_kn @ rot_x(-sp["ankle"])
        Rr.update({f"shoulder_{sfx}": R_sh, f"elbow_{sfx}": R_el, f"wrist_{sfx}": R_wr,
                   f"hip_{sfx}": R_hp, f"knee_{sfx}": R_kn, f"ankle_{sfx}": R_an})

    prims: list[Prim] = []
    kp = np.zeros((NUM_KEYPOINTS, 3))
    owners: list[tuple[str, ...]] = [()] * NUM_KEYPOINTS
    margin = np.full(NUM_KEYPOINTS, 0.02)

    def setkp(name: str, pos: np.ndarray, own: tuple[str, ...], m: float) -> None:
        i = KEYPOINT_INDEX[name]
        kp[i] = pos
        owners[i] = own
        margin[i] = m

    up_cov = [] if outfit["shirtless"] else [(-1.0, 2.0, P["upper_clothing"], "upper")]
    # --- torso
    pel_up = R_p @ ey
    prims.append(_segment("pelvis", J["hip_r"] + pel_up * 0.02, J["hip_l"] + pel_up * 0.02, 0.1 * g ** 0.7,
                          0.1 * g ** 0.7, R_p @ ey, scale=(1.0, 1.0, 0.85), skin=P["torso"],
                          cover=[(-1.0, 2.0, P["lower_clothing"], "lower")]))
    abd_cover = []
    if not outfit["shirtless"]:
        abd_cover.append((outfit["hem"], 2.0, P["upper_clothing"], "upper"))
    abd_cover.append((-1.0, outfit["waist"], P["lower_clothing"], "lower"))
    prims.append(_segment("abdomen", J["pelvis"] + pel_up * 0.03, J["chest"], 0.118 * g, 0.122 * g, R_s @ ex,
                          scale=(1.0, 1.0, 0.72), skin=P["torso"], cover=abd_cover))
    chest_top = J["neck_base"] - R_c @ ey * (0.085 * sh.scale)
    prims.append(_segment("chest", J["chest"] - R_c @ ey * 0.02, chest_top, 0.125 * g ** 0.8, 0.13 * g ** 0.6,
                          R_c @ ex, scale=(1.0, 0.9, 0.66), skin=P["torso"], cover=up_cov))
    prims.append(_segment("girdle", J["shoulder_r"] + R_c @ ey * 0.005, J["shoulder_l"] + R_c @ ey * 0.005,
                          0.055 * g ** 0.6, 0.055 * g ** 0.6, R_c @ ey, scale=(1.0, 1.0, 1.0),
                          skin=P["torso"], cover=up_cov))
    prims.append(_segment("neck", J["neck_base"] - R_c @ ey * 0.03, J["head_joint"], 0.05 * g ** 0.5,
                          0.045 * g ** 0.5, R_n @ ex, skin=P["face_neck"], cover=[]))
    # --- head, nose, ears, hair
    hr = sh.head
    prims.append(Prim("head", J["head"], R_h, hr.copy(), np.zeros(3), np.zeros(3), 1.0, 1.0, True,
                      {"kind": "head"}))
    pts = face_template(fp)

    def head_surface(a: float, b: float) -> np.ndarray:
        return hr * np.array([a, b, np.sqrt(max(1 - a * a - b * b, 0.0))])

    root = head_surface(0.0, fp.eye_y + 0.02)
    tipb = head_surface(0.0, fp.nose_tip_y)
    rb = 0.012 * fp.nose_w * sh.scale ** 0.5
    nose_h = [Prim("nose", root - np.array([0, 0, 0.004]), np.eye(3), np.ones(3), np.zeros(3),
                   tipb + np.array([0.0, 0.0, fp.nose_len - rb]) - (root - np.array([0, 0, 0.004])),
                   0.006, rb, True, {"kind": "plain", "part": P["nose"], "mat": "skin"})]
    for sfx, s in (("l", 1.0), ("r", -1.0)):
        c = head_surface(s * 0.12 * fp.nose_w, fp.nose_tip_y - 0.03) + np.array([0, 0, 0.002])
        nose_h.append(Prim(f"ala_{sfx}", c, np.eye(3), np.array([1.0, 0.8, 1.0]), np.zeros(3), np.zeros(3),
                           0.0095 * fp.nose_w, 0.0095 * fp.nose_w, True,
                           {"kind": "plain", "part": P["nose"], "mat": "skin"}))
    ear_h = []
    for sfx, s in (("l", 1.0), ("r", -1.0)):
        c = np.array([s * hr[0] * 0.96, -0.12 * hr[1], -0.12 * hr[2]])
        ear_h.append(Prim(f"ear_{sfx}", c, rot_y(s * 0.25), np.array([0.32, 1.0, 0.62]), np.zeros(3), np.zeros(3),
                          0.031 * sh.scale ** 0.5, 0.031 * sh.scale ** 0.5, True,
                          {"kind": "plain", "part": P["ears"], "mat": "skin"}))
    hair_h = []
    if outfit["long_hair"] and not fp.bald:
        a = np.array([0.0, 0.25 * hr[1], -0.45 * hr[2]])
        b = np.array([0.0, -0.2 * sh.scale, -0.085])
        hair_h.append(Prim("hair_long", a, frame_along(b - a, ex), np.array([1.0, 1.0, 0.5]), np.zeros(3),
                           np.array([0.0, np.linalg.norm(b - a), 0.0]), 0.085, 0.07, True,
                           {"kind": "plain", "part": P["hair"], "mat": "hair"}))
    if outfit["bun"] and not fp.bald:
        hair_h.append(Prim("hair_bun", np.array([0.0, 0.75 * hr[1], -0.75 * hr[2]]), np.eye(3), np.ones(3),
                           np.zeros(3), np.zeros(3), 0.04, 0.04, True,
                           {"kind": "plain", "part": P["hair"], "mat": "hair"}))
    # face landmarks: head surface, or the nose where a ray from the front meets it first
    names = list(pts)
    ab = np.array([pts[n] for n in names])
    surf = hr[None] * np.stack([ab[:, 0], ab[:, 1], np.sqrt(np.clip(1 - (ab ** 2).sum(1), 0, None))], 1)
    origins = surf + np.array([0, 0, 0.2])
    dirs = np.tile(np.array([0.0, 0, -1.0]), (len(names), 1))
    best = np.full(len(names), np.inf)
    for pr in nose_h:
        t, _, _ = intersect(pr, dirs, origins)
        better = t < best
        best[better] = t[better]
    hitp = origins + np.where(np.isfinite(best), best, 0.2)[:, None] * dirs
    face3 = np.where((np.isfinite(best) & (hitp[:, 2] > surf[:, 2]))[:, None], hitp, surf)
    head_owners = ("head", "nose", "ala_l", "ala_r")
    for n, p3 in zip(names, face3):
        setkp(n, J["head"] + R_h @ p3, head_owners, 0.012)
    for pr in nose_h + ear_h + hair_h:
        prims.append(pr.transformed(R_h, J["head"]))
    setkp("nose", kp[KEYPOINT_INDEX["face_nose_bridge_6"]], head_owners, 0.012)
    setkp("right_eye", kp[KEYPOINT_INDEX["face_right_iris_center"]], head_owners, 0.012)
    setkp("left_eye", kp[KEYPOINT_INDEX["face_left_iris_center"]], head_owners, 0.012)
    for sfx, side, s in SIDES:
        ear = [p for p in ear_h if p.name == f"ear_{sfx}"][0]
        setkp(f"{side}_ear", J["head"] + R_h @ (ear.c + np.array([s * 0.006, 0, 0])), (f"ear_{sfx}", "head"), 0.03)
    # --- limbs
    for sfx, side, s in SIDES:
        sp = pose[side]
        lat = s * ex
        sh_j, el_j, wr_j = J[f"shoulder_{sfx}"], J[f"elbow_{sfx}"], J[f"wrist_{sfx}"]
        ua_cov = [] if outfit["sleeve_upper"] <= 0 else [(-1.0, outfit["sleeve_upper"], P["upper_clothing"], "upper")]
        fa_cov = [] if outfit["sleeve_lower"] <= 0 else [(-1.0, outfit["sleeve_lower"], P["upper_clothing"], "upper")]
        prims.append(_segment(f"upper_arm_{sfx}", sh_j, el_j, 0.052 * g ** 0.7, 0.04 * g ** 0.6,
                              Rr[f"shoulder_{sfx}"] @ lat, skin=P[f"{side}_upper_arm"], cover=ua_cov))
        prims.append(_segment(f"forearm_{sfx}", el_j, wr_j, 0.04 * g ** 0.6, 0.029 * g ** 0.4,
                              Rr[f"elbow_{sfx}"] @ lat, skin=P[f"{side}_lower_arm"], cover=fa_cov))
        setkp(f"{side}_shoulder", sh_j, (f"upper_arm_{sfx}", "girdle", "chest"), 0.1 * g)
        setkp(f"{side}_elbow", el_j, (f"upper_arm_{sfx}", f"forearm_{sfx}"), 0.07 * g ** 0.7)
        setkp(f"{side}_wrist", wr_j, (f"forearm_{sfx}", f"palm_{sfx}"), 0.05 * g ** 0.5)
        # hand: palm faces -s x (towards the body) in the rest pose, thumb forward (+z)
        R_wr, hs = Rr[f"wrist_{sfx}"], sh.hand * 0.95
        hand_part = P[f"{side}_hand"]
        palm_c = wr_j + R_wr @ np.array([0.0, -0.05 * hs, 0.0])
        prims.append(Prim(f"palm_{sfx}", palm_c, R_wr, np.array([0.016, 0.048, 0.043]) * hs, np.zeros(3),
                          np.zeros(3), 1.0, 1.0, True, {"kind": "plain", "part": hand_part, "mat": "skin"}))
        curl = sp["fingers"]
        zpos = np.array([0.026, 0.009, -0.008, -0.024]) * hs
        lens = np.array([0.046, 0.027, 0.021]) * hs
        for fi, finger in enumerate(FINGERS):
            if finger == "thumb":
                tb, tcurl = sp["thumb"]
                base = wr_j + R_wr @ (np.array([-s * 0.012, -0.028, 0.024]) * hs)
                d0 = R_wr @ rot_y(-s * tb) @ np.array([-s * 0.3, -0.55, 0.78])
                R_f = frame_along(d0, R_wr @ (-s * ex))
                seg = np.array([0.042, 0.033, 0.028]) * hs
                rad = np.array([0.0125, 0.011, 0.0098]) * hs
                angles = np.array([0.15, 0.6, 0.7]) * tcurl * 70 * D2R
                own_prev = (f"palm_{sfx}",)
                pos = base
                for j in range(3):
                    R_f = R_f @ rot_z(-angles[j])
                    nxt = pos + R_f @ np.array([0.0, seg[j], 0.0])
                    nm = f"{finger}{j + 1}_{sfx}"
                    prims.append(Prim(nm, pos, R_f, np.ones(3), np.zeros(3), np.array([0.0, seg[j], 0.0]),
                                      rad[j], rad[j] * 0.92, True, {"kind": "plain", "part": hand_part, "mat": "skin"}))
                    setkp(f"{side}_{finger}{j + 1}", pos, own_prev + (nm,), 0.02)
                    own_prev = (nm,)
                    pos = nxt
                setkp(f"{side}_{finger}4", pos + R_f @ np.array([0.0, rad[2] * 0.9, 0.0]), own_prev, 0.015)
                continue
            k = fi - 1
            factor = (0.93, 1.0, 0.95, 0.78)[k]
            rfac = (1.0, 1.0, 0.95, 0.85)[k]
            pos = wr_j + R_wr @ np.array([0.0, -0.093 * hs * (1.0 - 0.05 * abs(k - 1)), zpos[k]])
            spread = sp["spread"] * (1.5 - k)  # index spreads forward, pinky back
            R_f = R_wr @ rot_x(-spread * 0.5)
            own_prev = (f"palm_{sfx}",)
            for j in range(3):
                R_f = R_f @ rot_z(-s * curl[fi, j])
                L = lens[j] * factor
                r0 = (0.0095, 0.0087, 0.008)[j] * hs * rfac
                nxt = pos + R_f @ np.array([0.0, -L, 0.0])
                nm = f"{finger}{j + 1}_{sfx}"
                prims.append(_segment(nm, pos, nxt, r0, r0 * 0.93, R_f @ ex, kind="plain", part=hand_part, mat="skin"))
                setkp(f"{side}_{finger}{j + 1}", pos, own_prev + (nm,), 0.018)
                own_prev = (nm,)
                pos = nxt
            setkp(f"{side}_{finger}4", pos + R_f @ np.array([0.0, -0.0075 * hs * rfac, 0.0]), own_prev, 0.015)
        # legs
        hp, kn, an = J[f"hip_{sfx}"], J[f"knee_{sfx}"], J[f"ankle_{sfx}"]
        th_cov = [(-1.0, outfit["leg_upper"], P["lower_clothing"], "lower")]
        sh_cov = []
        if outfit["leg_upper"] >= 1.0 and outfit["leg_lower"] > 0:
            sh_cov.append((-1.0, outfit["leg_lower"], P["lower_clothing"], "lower"))
        if outfit["shoes"]:
            sh_cov.insert(0, (outfit["boot"], 2.0, P[f"{side}_shoe"], "shoe"))
        prims.append(_segment(f"thigh_{sfx}", hp, kn, 0.085 * g ** 0.8, 0.058 * g ** 0.6, Rr[f"hip_{sfx}"] @ lat,
                              skin=P[f"{side}_upper_leg"], cover=th_cov))
        prims.append(_segment(f"shank_{sfx}", kn, an, 0.055 * g ** 0.6, 0.04 * g ** 0.4, Rr[f"knee_{sfx}"] @ lat,
                              skin=P[f"{side}_lower_leg"], cover=sh_cov))
        setkp(f"{side}_hip", hp, ("pelvis", f"thigh_{sfx}", "abdomen"), 0.16 * g ** 0.8)
        setkp(f"{side}_knee", kn, (f"thigh_{sfx}", f"shank_{sfx}"), 0.1 * g ** 0.7)
        setkp(f"{side}_ankle", an, (f"shank_{sfx}", f"foot_{sfx}"), 0.07 * g ** 0.5)
        R_an, fs = Rr[f"ankle_{sfx}"], sh.foot * sh.scale
        heel = an + R_an @ (np.array([0.0, -0.045, -0.04]) * fs)
        toe = an + R_an @ (np.array([0.0, -0.06, 0.135]) * fs)
        foot_cov = [(-1.0, 2.0, P[f"{side}_shoe"], "shoe")] if outfit["shoes"] else []
        foot = _segment(f"foot_{sfx}", heel, toe, 0.038 * fs, 0.036 * fs, R_an @ lat, scale=(1.15, 1.0, 0.7),
                        skin=P[f"{side}_foot"], cover=foot_cov)
        prims.append(foot)
        fwd = (toe - heel) / np.linalg.norm(toe - heel)
        down = -(R_an @ ey)
        med = -foot.R[:, 0]  # local x was built towards the lateral side
        setkp(f"{side}_big_toe", toe + fwd * 0.03 * fs + med * 0.016 * fs, (f"foot_{sfx}",), 0.03)
        setkp(f"{side}_small_toe", toe + fwd * 0.012 * fs - med * 0.03 * fs, (f"foot_{sfx}",), 0.03)
        setkp(f"{side}_heel", heel - fwd * 0.03 * fs + down * 0.012 * fs, (f"foot_{sfx}",), 0.03)
    # body centre keypoints
    setkp("neck", 0.5 * (J["shoulder_l"] + J["shoulder_r"]), ("girdle", "chest", "neck"), 0.22 * g ** 0.6)
    setkp("mid_hip", 0.5 * (J["hip_l"] + J["hip_r"]), ("pelvis", "abdomen", "thigh_l", "thigh_r"), 0.25 * g ** 0.7)
    assert all(owners), [KEYPOINT_NAMES[i] for i, o in enumerate(owners) if not o][:5]
    label, rgb = face_atlas(fp, pts, skin, hair)
    return Person(prims, kp, owners, margin, materials, fp, label, rgb, hr, dict(J, pose=pose, outfit=outfit))
