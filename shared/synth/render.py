"""Render a scene into the image and every label, all from one z-buffer of the same primitives.

Outputs (``Sample``): RGB image, albedo (person albedo under uniform white light; background pixels
copied from the image), part map, person mask, camera-frame unit normals, focal-normalised pointmap,
308 keypoints with visibility, person box, and a JSON-able record of the camera and light.

Shading model (exact, per person pixel): ``image = clip(albedo * (ambient + rgb * max(0, n . l)), 0, 1)``
quantised to uint8, with ``l`` the unit direction towards the light in the camera frame, except on the
one-pixel band along primitive boundaries, which is anti-aliased with a 3x3 blur (``Sample.edge``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from humans.shared.synth.body import material_rgb
from humans.shared.synth.face import atlas_lookup, hair_mask
from humans.shared.synth.geometry import pixel_rays, render_zbuffer
from humans.shared.synth.scene import Scene, sample_scene
from humans.shared.humans.keypoints import NUM_KEYPOINTS
from humans.shared.humans.parts import PART_INDEX

POINTMAP_CONVENTION = ("pointmap = P_cam * max(H, W) / fx: camera-frame point (metres; x right, y down, "
                       "z forward) divided by the focal length expressed in units of the image's longer side")


@dataclass
class Sample:
    image: np.ndarray       # (H, W, 3) uint8
    albedo: np.ndarray      # (H, W, 3) uint8
    albedo_f: np.ndarray    # (H, W, 3) float32 exact person albedo (0 off the person)
    parts: np.ndarray       # (H, W) uint8
    mask: np.ndarray        # (H, W) bool
    normals: np.ndarray     # (H, W, 3) float32, zeros off the person
    pointmap: np.ndarray    # (H, W, 3) float32, focal-normalised, zeros off the person
    depth: np.ndarray       # (H, W) float32 camera z in metres, 0 off the person
    keypoints: np.ndarray   # (308, 3) x, y, v
    bbox: list[float]       # x, y, w, h (pixel edges)
    area: int
    record: dict
    prim: np.ndarray        # (H, W) int16 index of the primitive seen (-1 none); internal, not written
    edge: np.ndarray        # (H, W) bool pixels anti-aliased in the image (outside the shading model)


def _shade_albedo(scene: Scene, prim_hit: np.ndarray, loc: np.ndarray, P: np.ndarray, prims
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Albedo [N, 3] and parts [N] of the hit pixels from each pixel's primitive and material."""
    n = len(prim_hit)
    albedo = np.zeros((n, 3), dtype=np.float64)
    parts = np.zeros(n, dtype=np.uint8)
    if n == 0:
        return albedo, parts
    order = np.argsort(prim_hit.astype(np.int16), kind="stable")  # radix sort; usually presorted
    ids, starts = np.unique(prim_hit[order], return_index=True)
    bounds = list(starts[1:]) + [n]
    person, mats = scene.person, scene.person.materials
    for k, a, b in zip(ids, starts, bounds):
        sel = order[a:b]
        prim = prims[k]
        meta = prim.meta
        p_body = (P[sel] - scene.t_bc) @ scene.R_bc
        kind = meta["kind"]
        if kind == "occluder":
            albedo[sel] = material_rgb(meta["mat"], P[sel] * 3.0)
        elif kind == "head":
            p = loc[sel]
            lab = np.where(p[:, 2] > 0, atlas_lookup(person.atlas_label, p[:, :2]), 0)
            hair = hair_mask(p, person.face) & (lab == 0)
            skin = (lab == 0) & ~hair
            part = np.full(len(sel), PART_INDEX["face_neck"], dtype=np.uint8)
            col = np.empty((len(sel), 3))
            feat = lab > 0
            if feat.any():
                part[feat] = lab[feat]
                col[feat] = atlas_lookup(person.atlas_rgb, p[feat, :2])
            if hair.any():
                part[hair] = PART_INDEX["hair"]
                col[hair] = material_rgb(mats["hair"], p_body[hair])
            if skin.any():
                col[skin] = material_rgb(mats["skin"], p_body[skin])
            parts[sel] = part
            albedo[sel] = col
        elif kind == "plain":
            parts[sel] = meta["part"]
            albedo[sel] = material_rgb(mats[meta["mat"]], p_body)
        else:  # segment with clothing cover rules along its axis
            u = loc[sel, 1] / meta["length"]
            lab = np.full(len(sel), meta["skin"], dtype=np.uint8)
            col = np.empty((len(sel), 3))
            todo = np.ones(len(sel), dtype=bool)
            for u0, u1, part, mat in meta["cover"]:
                m = todo & (u >= u0) & (u <= u1)
                if m.any():
                    lab[m] = part
                    col[m] = material_rgb(mats[mat], p_body[m])
                    todo &= ~m
            if todo.any():
                col[todo] = material_rgb(mats["skin"], p_body[todo])
            parts[sel] = lab
            albedo[sel] = col
    return albedo, parts


def shading_of(normals: np.ndarray, light: dict) -> np.ndarray:
    """The shading model: ambient + rgb * max(0, n . l) for normals [..., 3] (light as in the record)."""
    l = np.asarray(light["direction"], dtype=np.float64)
    return (np.asarray(light["ambient"])[None] + np.asarray(light["rgb"])[None]
            * np.clip(normals.reshape(-1, 3) @ l, 0, None)[:, None]).reshape(normals.shape)


def render(scene: Scene) -> Sample:
    cam, light = scene.camera, scene.light
    h, w = cam.height, cam.width
    dirs = pixel_rays(h, w, cam.fx, cam.fy, cam.cx, cam.cy)
    prims = [p.transformed(scene.R_bc, scene.t_bc) for p in scene.person.prims] + list(scene.occluders)
    zb = render_zbuffer(prims, dirs, cam.fx, cam.fy, cam.cx, cam.cy)
    is_person = np.array([p.person for p in prims] + [False])  # index -1 -> False
    hit = zb.hit
    prim_hit = zb.prim.reshape(-1)[hit]
    z_hit = zb.depth.reshape(-1)[hit]
    u, v = hit % w, hit // w
    P = np.empty((len(hit), 3))
    P[:, 0] = (u - cam.cx) / cam.fx * z_hit
    P[:, 1] = (v - cam.cy) / cam.fy * z_hit
    P[:, 2] = z_hit
    n_hit = zb.normal
    albedo, parts_hit = _shade_albedo(scene, prim_hit, zb.local, P, prims)
    lin = albedo * shading_of(n_hit, light.as_dict())
    image = np.clip(np.rint(scene.background * 255.0), 0, 255).astype(np.uint8).reshape(-1, 3)
    image[hit] = np.clip(np.rint(lin * 255.0), 0, 255).astype(np.uint8)
    # anti-aliasing: pixels next to another primitive (silhouettes, seams, occluders) get a 3x3 blur
    # of the image; labels stay exact, and these pixels are left out of the shading model
    pr = zb.prim
    edge = np.zeros((h, w), dtype=bool)
    edge[:, 1:] |= pr[:, 1:] != pr[:, :-1]
    edge[:, :-1] |= pr[:, 1:] != pr[:, :-1]
    edge[1:] |= pr[1:] != pr[:-1]
    edge[:-1] |= pr[1:] != pr[:-1]
    img2 = image.reshape(h, w, 3)
    soft = cv2.GaussianBlur(img2, (3, 3), 0.8)
    img2[edge] = soft[edge]
    pm = is_person[prim_hit]           # person among the hit pixels
    if not pm.all():                   # an occluder is in view: keep only the person's pixels
        pidx, albedo, parts_hit, n_hit, P = hit[pm], albedo[pm], parts_hit[pm], n_hit[pm], P[pm]
    else:
        pidx = hit                     # flat indices of person pixels
    mask = np.zeros(h * w, dtype=bool)
    mask[pidx] = True
    albedo_u8 = image.copy()
    albedo_u8[pidx] = np.clip(np.rint(albedo * 255.0), 0, 255).astype(np.uint8)
    albedo_f = np.zeros((h * w, 3), dtype=np.float32)
    albedo_f[pidx] = albedo
    parts = np.zeros(h * w, dtype=np.uint8)
    parts[pidx] = parts_hit
    normals = np.zeros((h * w, 3), dtype=np.float32)
    normals[pidx] = n_hit
    scale = max(h, w) / cam.fx
    pointmap = np.zeros((h * w, 3), dtype=np.float32)
    pointmap[pidx] = P * scale
    depth = np.zeros(h * w, dtype=np.float32)
    depth[pidx] = P[:, 2]
    image, albedo_u8 = image.reshape(h, w, 3), albedo_u8.reshape(h, w, 3)
    albedo_f, parts, normals = albedo_f.reshape(h, w, 3), parts.reshape(h, w), normals.reshape(h, w, 3)
    pointmap, depth, mask = pointmap.reshape(h, w, 3), depth.reshape(h, w), mask.reshape(h, w)

    # keypoints: projection + visibility (in image, on one of the keypoint's own primitives, not
    # hidden in front by more than the keypoint's depth margin)
    person = scene.person
    kc = person.kp_pos @ scene.R_bc.T + scene.t_bc
    z = kc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = cam.cx + cam.fx * kc[:, 0] / z
        y = cam.cy + cam.fy * kc[:, 1] / z
    inside = (z > 1e-3) & (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)
    kps = np.zeros((NUM_KEYPOINTS, 3))
    for i in np.nonzero(inside)[0]:
        ui, vi = int(np.rint(x[i])), int(np.rint(y[i]))
        ui, vi = min(max(ui, 0), w - 1), min(max(vi, 0), h - 1)
        k = int(zb.prim[vi, ui])
        owners = person.kp_owners[i]
        vis = (k >= 0 and prims[k].person and prims[k].name in owners
               and zb.depth[vi, ui] >= z[i] - person.kp_margin[i])
        kps[i] = (x[i], y[i], 2.0 if vis else 1.0)
    ys, xs = np.nonzero(mask)
    if len(xs):
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    record = {"camera": cam.as_dict(), "light": light.as_dict(), "scene": scene.info,
              "pointmap_scale": float(scale)}
    return Sample(image, albedo_u8.reshape(h, w, 3), albedo_f, parts, mask, normals, pointmap, depth, kps, bbox,
                  int(mask.sum()), record, zb.prim.astype(np.int16), edge)


def generate(seed: int, index: int, size=512, symmetric: bool = False, min_area_frac: float = 0.004) -> Sample:
    """The sample for ``(seed, index)``: deterministic for the same arguments on any machine/worker.
    Scenes whose person covers less than ``min_area_frac`` of the image are redrawn (deterministically)."""
    rng = np.random.default_rng([int(seed), int(index)])
    for _ in range(20):
        scene = sample_scene(rng, size, symmetric=symmetric)
        sample = render(scene)
        if sample.area >= min_area_frac * sample.mask.size:
            return sample
    return sample
