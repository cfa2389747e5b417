"""A scene: one person placed in front of a random perspective camera, a random directional light
plus ambient light, an optional occluder and a procedural background. Sampling is a pure function of
the random generator, so ``(seed, index)`` fixes every pixel."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from humans.shared.synth import background as bgmod
from humans.shared.synth.body import Person, build_person, sample_cloth
from humans.shared.synth.geometry import Prim, frame_along, pixel_rays, rot_axis
from humans.shared.humans.keypoints import BODY, FACE, KEYPOINT_INDEX

FRAMINGS = ("full", "upper", "head", "part")


@dataclass
class Camera:
    """Pinhole camera, pixel (u, v) centre at x = u, y = v; camera frame x right, y down, z forward."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def as_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy, "cx": self.cx,
                "cy": self.cy}


@dataclass
class Light:
    """Directional light (``direction`` points from the surface towards the light, camera frame) of
    colour ``rgb`` plus constant ``ambient``: shading = ambient + rgb * max(0, n . direction)."""

    direction: np.ndarray
    rgb: np.ndarray
    ambient: np.ndarray

    def as_dict(self) -> dict:
        return {"direction": [float(v) for v in self.direction], "rgb": [float(v) for v in self.rgb],
                "ambient": [float(v) for v in self.ambient]}


@dataclass
class Scene:
    person: Person
    R_bc: np.ndarray          # body frame -> camera frame rotation
    t_bc: np.ndarray          # body frame -> camera frame translation
    camera: Camera
    light: Light
    background: np.ndarray    # (H, W, 3) float32 shaded background colour in [0, 1]
    occluders: list[Prim] = field(default_factory=list)  # camera frame, not part of the person
    info: dict = field(default_factory=dict)


def parse_size(size) -> tuple[int, int]:
    """``512`` -> (512, 512); ``"640x480"`` -> (height 480, width 640); (h, w) passes through."""
    if isinstance(size, (tuple, list)):
        h, w = int(size[0]), int(size[1])
    elif isinstance(size, str) and "x" in size.lower():
        w_s, h_s = size.lower().split("x", 1)
        h, w = int(h_s), int(w_s)
    else:
        h = w = int(size)
    if h < 16 or w < 16:
        raise ValueError(f"image size must be at least 16x16 pixels, got {w}x{h}")
    return h, w


def _camera_axes(view: np.ndarray, roll: float) -> np.ndarray:
    """World->camera rotation (rows x, y, z) for a camera whose forward axis is ``-view``."""
    f = -view / np.linalg.norm(view)
    up = np.array([0.0, 1.0, 0.0])
    x = np.cross(-up, f)
    x /= np.linalg.norm(x)
    y = np.cross(f, x)
    if roll:
        r = rot_axis(f, roll)
        x, y = r @ x, r @ y
    return np.stack([x, y, f], axis=0)


def sample_scene(rng: np.random.Generator, size, symmetric: bool = False) -> Scene:
    """Sample a person, camera, light, occluder and background.

    ``symmetric=True`` makes a mirror-symmetric person seen from the front or back on the symmetry
    plane, lit from the symmetry plane (used to test left/right flip definitions).
    """
    h, w = parse_size(size)
    person = build_person(rng, symmetric)
    kp = person.kp_pos
    fov = np.radians(rng.uniform(28, 72))
    fx = (w / 2) / np.tan(fov / 2)
    cam = Camera(w, h, float(fx), float(fx), (w - 1) / 2.0, (h - 1) / 2.0)
    framing = str(rng.choice(FRAMINGS, p=[0.55, 0.22, 0.13, 0.10] if not symmetric else [0.6, 0.25, 0.15, 0.0]))
    if framing == "full":
        pts = kp
        q = rng.uniform(0.55, 0.92)
    elif framing == "upper":
        sel = [KEYPOINT_INDEX[n] for n in ("nose", "neck", "left_shoulder", "right_shoulder", "left_elbow",
                                            "right_elbow", "mid_hip", "left_ear", "right_ear")]
        pts = kp[sel]
        q = rng.uniform(0.6, 0.9)
    elif framing == "head":
        pts = kp[list(FACE) + [KEYPOINT_INDEX["left_ear"], KEYPOINT_INDEX["right_ear"]]]
        q = rng.uniform(0.45, 0.8)
    else:
        centre = kp[int(rng.choice(list(BODY) + [30, 50]))]
        pts = kp[np.linalg.norm(kp - centre, axis=1) < rng.uniform(0.25, 0.5)]
        q = rng.uniform(0.5, 1.0)
    if symmetric:
        az = float(rng.choice([0.0, np.pi]))
        roll = 0.0
    else:
        az = rng.uniform(-np.pi, np.pi) if rng.random() < 0.35 else rng.normal(0, 0.6)
        roll = np.radians(rng.normal(0, 5))
    el = np.radians(rng.uniform(-10, 35) if framing != "head" else rng.uniform(-15, 25))
    view = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    R_wc = _camera_axes(view, roll)
    pc = pts @ R_wc.T
    lo, hi = pc.min(0), pc.max(0)
    target_c = 0.5 * (lo + hi)
    ext_x, ext_y, ext_z = hi - lo
    ext_x, ext_y = max(ext_x, 0.05), max(ext_y, 0.05)
    dist = cam.fx * max(ext_x / (q * w), ext_y / (q * h)) + 0.5 * ext_z
    shift = (1 - q) / 2 if framing != "part" else 0.35
    du = 0.0 if symmetric else rng.uniform(-shift, shift) * w
    dv = rng.uniform(-shift, shift) * h
    target_w = R_wc.T @ target_c
    if symmetric:
        target_w[0] = 0.0
    # camera centre in the world: the target sits at pixel offset (du, dv) from the principal point
    for _ in range(12):
        off = np.array([-du * dist / cam.fx, -dv * dist / cam.fy, -dist])
        cam_pos = target_w + R_wc.T @ off
        t_bc = -R_wc @ cam_pos
        near = min(float((R_wc @ c + t_bc)[2] - r) for c, r in (p.bounding_sphere() for p in person.prims))
        if near > 0.08:
            break
        dist *= 1.25
    R_bc = R_wc
    # light (camera frame)
    ldir = np.array([rng.uniform(-1, 1), rng.uniform(-1.3, 0.25), rng.uniform(-1.2, 0.45)])
    if symmetric:
        ldir[0] = 0.0
    ldir /= np.linalg.norm(ldir)
    tint = 1 + rng.uniform(-0.12, 0.12, 3)
    light = Light(ldir, rng.uniform(0.55, 1.05) * tint, rng.uniform(0.15, 0.5) * (1 + rng.uniform(-0.1, 0.1, 3)))
    # occluder
    occluders: list[Prim] = []
    if not symmetric and rng.random() < 0.12:
        k = int(rng.integers(0, 25))
        pk = R_bc @ kp[k] + t_bc
        lam = rng.uniform(0.45, 0.8)
        c = pk * lam
        rad = rng.uniform(0.03, 0.12) * lam * max(pk[2], 0.3)
        if c[2] - rad > 0.1:
            axis = rng.normal(size=3)
            length = rng.uniform(0.0, 4.0) * rad
            axis = axis / np.linalg.norm(axis)
            occ = Prim("occluder", c - axis * length / 2, frame_along(axis, np.array([1.0, 0, 0])),
                       np.ones(3), np.zeros(3), np.array([0.0, length, 0.0]), rad, rad * rng.uniform(0.6, 1.0), False,
                       {"kind": "occluder", "mat": sample_cloth(rng)})
            occluders.append(occ)
    # background: wall and floor are smooth, so they are drawn at half resolution and upsampled once;
    # clutter is drawn at full resolution
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    bg = bgmod.wall(rng, h2, w2)
    with_clutter = rng.random() < 0.5
    n_clutter = int(rng.integers(3, 16))
    if rng.random() < 0.5:
        up_cam = R_bc @ np.array([0.0, 1.0, 0.0])
        feet = [kp[KEYPOINT_INDEX[n]] for n in ("left_heel", "right_heel", "left_big_toe", "right_big_toe")]
        ground_y = min(float(f[1]) for f in feet) - 0.01
        fpt = R_bc @ np.array([0.0, ground_y, 0.0]) + t_bc
        feet_c = [R_bc @ np.array([f[0], ground_y, f[2]]) + t_bc for f in feet]
        dirs = pixel_rays(h2, w2, cam.fx * w2 / w, cam.fy * h2 / h, (w2 - 1) / 2.0, (h2 - 1) / 2.0)
        col, seen = bgmod.floor(rng, dirs, up_cam, fpt, np.array(feet_c), light.direction, light.rgb, light.ambient)
        bg = np.where(seen[..., None], col, bg)
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
    if with_clutter:
        bgmod.clutter(rng, bg, n_clutter)
    if rng.random() < 0.35:
        sig = rng.uniform(0.5, 3.0) * max(h, w) / 512
        bg = cv2.GaussianBlur(bg, (0, 0), sig)
    bg = np.clip(bg, 0, 1, out=bg)
    info = {"framing": framing, "pose_family": person.joints["pose"]["family"], "fov_deg": float(np.degrees(fov)),
            "azimuth_deg": float(np.degrees(az)), "elevation_deg": float(np.degrees(el)),
            "occluder": bool(occluders), "symmetric": bool(symmetric)}
    return Scene(person, R_bc, t_bc, cam, light, bg, occluders, info)
