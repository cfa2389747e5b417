"""Smooth primitives and their analytic ray casting into a z-buffer (numpy, vectorised per primitive).

Every primitive is a *scaled round cone*: the convex hull of two spheres (centres ``pa``, ``pb``,
radii ``ra``, ``rb``) in a local space, placed in the camera frame by ``p_cam = c + R @ (S * p_loc)``.
With ``pa == pb`` it is an ellipsoid of radii ``S * ra``; with ``S = 1`` a capsule / tapered limb;
with anisotropic ``S`` a limb of elliptic cross-section (torso, feet, palms). Rays come from the camera
centre; hits, camera-frame normals (outward, from the analytic gradient) and local hit points are
exact, so every label derived from them agrees with the image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def rot_axis(axis: np.ndarray, a: float) -> np.ndarray:
    """Rotation by angle ``a`` about unit vector ``axis`` (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / max(np.linalg.norm(k), 1e-12)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross is slow for single vectors)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def frame_along(axis: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Rotation whose column 1 (local y) is ``axis``; column 0 lies near ``hint``."""
    y = np.asarray(axis, dtype=np.float64)
    y = y / max(np.linalg.norm(y), 1e-12)
    x = np.asarray(hint, dtype=np.float64) - np.dot(hint, y) * y
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0, 0]) - y[0] * y
        if np.linalg.norm(x) < 1e-6:
            x = np.array([0, 0, 1.0]) - y[2] * y
    x = x / np.linalg.norm(x)
    z = cross3(x, y)
    return np.stack([x, y, z], axis=1)


@dataclass
class Prim:
    """One scaled round cone. ``meta`` carries what the material/label pass needs."""

    name: str
    c: np.ndarray                 # (3,) local origin in the current frame
    R: np.ndarray                 # (3, 3) local axes as columns
    S: np.ndarray                 # (3,) local scale
    pa: np.ndarray                # (3,) local sphere centres
    pb: np.ndarray
    ra: float
    rb: float
    person: bool = True
    meta: dict = field(default_factory=dict)

    def transformed(self, Rw: np.ndarray, tw: np.ndarray) -> "Prim":
        """This primitive moved by the rigid map p -> Rw @ p + tw."""
        return Prim(self.name, Rw @ self.c + tw, Rw @ self.R, self.S, self.pa, self.pb, self.ra, self.rb,
                    self.person, self.meta)

    def to_frame(self, p_loc: np.ndarray) -> np.ndarray:
        """Local points [N, 3] -> points in the primitive's frame."""
        return self.c + (p_loc * self.S) @ self.R.T

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        mid = 0.5 * (self.pa + self.pb)
        rad = 0.5 * float(np.linalg.norm(self.pb - self.pa)) + max(self.ra, self.rb)
        return self.to_frame(mid[None])[0], rad * float(np.max(self.S))


def _cone_t(m2, m3, m6, m0: float, m1, m5, m7, ba_len2_ok: bool, ra: float, rb: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest positive hit distance of unit rays with a round cone from the ray/cone dot products
    (Inigo Quilez's rounded-cone intersection). Returns t (inf = miss) and which surface was hit
    (0 miss, 1 cone body, 2 sphere a, 3 sphere b)."""
    n = m3.shape[0]
    t = np.full(n, np.inf)
    which = np.zeros(n, dtype=np.int8)
    with np.errstate(invalid="ignore", divide="ignore"):
        if ba_len2_ok:
            rr = ra - rb
            d2 = m0 - rr * rr
            k2 = d2 - m2 * m2
            k1 = d2 * m3 - m1 * m2 + m2 * (rr * ra)
            k0 = d2 * m5 - m1 * m1 + m1 * (rr * ra * 2.0) - m0 * ra * ra
            h = k1 * k1 - k0 * k2
            tb = (-np.sqrt(h) - k1) / k2
            y = m1 - ra * rr + tb * m2
            ok = (y > 0) & (y < d2) & (tb > 0)
            t[ok] = tb[ok]
            which[ok] = 1
        h1 = m3 * m3 - m5 + ra * ra
        t1 = -m3 - np.sqrt(h1)
        ok = (t1 > 0) & (t1 < t)
        t[ok] = t1[ok]
        which[ok] = 2
        h2 = m6 * m6 - m7 + rb * rb
        t2 = -m6 - np.sqrt(h2)
        ok = (t2 > 0) & (t2 < t)
        t[ok] = t2[ok]
        which[ok] = 3
    return t, which


def round_cone_hit(o: np.ndarray, d: np.ndarray, pa: np.ndarray, pb: np.ndarray, ra: float, rb: float,
                   want_normals: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """First hit of unit rays ``o + t d`` (d [N, 3]; o [3] or [N, 3]) with a round cone.

    Returns ``t`` [N] (inf where missed or behind) and the unnormalised outward normal [N, 3].
    """
    ba, oa, ob = pb - pa, o - pa, o - pb
    m0 = float(ba @ ba)
    if np.ndim(o) == 2:
        m1, m3, m5 = oa @ ba, (d * oa).sum(-1), (oa * oa).sum(-1)
        m6, m7 = (d * ob).sum(-1), (ob * ob).sum(-1)
    else:
        m1, m3, m5 = float(oa @ ba), d @ oa, float(oa @ oa)
        m6, m7 = d @ ob, float(ob @ ob)
    m2 = d @ ba
    t, which = _cone_t(m2, m3, m6, m0, m1, m5, m7, m0 > 1e-12, ra, rb)
    if not want_normals:
        return t, None
    return t, _cone_normal(t, which, d, oa, ba, m1, m2, m0, ra, rb)


def _cone_normal(t, which, d, oa, ba, m1, m2, m0, ra, rb) -> np.ndarray:
    """Unnormalised outward normals [N, 3] at the hits (zeros elsewhere)."""
    n = len(t)
    nrm = np.zeros((n, 3))
    hit = which > 0
    if not hit.any():
        return nrm
    th = t[hit, None]
    p_a = (oa[hit] if np.ndim(oa) == 2 else oa) + th * d[hit]  # hit point relative to pa
    w = which[hit]
    nn = p_a.copy()
    body = w == 1
    if body.any():
        m1h = m1[hit][body] if np.ndim(m1) else m1
        yb = m1h - ra * (ra - rb) + th[body, 0] * m2[hit][body]
        nn[body] = (m0 - (ra - rb) ** 2) * p_a[body] - ba[None] * yb[:, None]
    nn[w == 3] = p_a[w == 3] - ba[None]
    nrm[hit] = nn
    return nrm


def intersect(prim: Prim, dirs: np.ndarray, origin: np.ndarray | None = None, want_normals: bool = True,
              want_which: bool = False):
    """Intersect unit rays ``dirs`` [N, 3] (from ``origin`` [3] or [N, 3], default the camera centre)
    with ``prim``.

    Returns distance ``t`` [N] along the ray (inf = miss), and with ``want_normals`` the unit outward
    normal [N, 3] in the prim's frame and the local hit point [N, 3] (canonical round-cone space).
    """
    o = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    Mt = prim.R / prim.S[None, :]          # rows: d_local = d @ Mt
    ol = ((o - prim.c) @ prim.R) / prim.S
    pa, pb, ra, rb = prim.pa, prim.pb, prim.ra, prim.rb
    ba = pb - pa
    m0 = float(ba @ ba)
    unit = bool(np.all(prim.S == 1.0))
    if np.ndim(ol) == 2 or want_normals:
        dl = dirs @ Mt
        nl = np.ones(len(dirs)) if unit else np.sqrt((dl * dl).sum(-1))
        dln = dl if unit else dl / nl[:, None]
        tl, n_loc = round_cone_hit(ol, dln, pa, pb, ra, rb, want_normals)
    else:
        # common origin, distances only: dot products straight from the world-frame rays
        oa, ob = ol - pa, ol - pb
        if unit:
            nl = None
        else:
            dl = dirs @ Mt
            nl = np.sqrt((dl * dl).sum(-1))
        m2 = dirs @ (Mt @ ba)
        m3 = dirs @ (Mt @ oa)
        m6 = dirs @ (Mt @ ob)
        if nl is not None:
            m2, m3, m6 = m2 / nl, m3 / nl, m6 / nl
        tl, which = _cone_t(m2, m3, m6, m0, float(oa @ ba), float(oa @ oa), float(ob @ ob), m0 > 1e-12, ra, rb)
        t = tl if nl is None else tl / nl
        return (t, which) if want_which else (t, None, None)
    t = tl / nl
    if not want_normals:
        return t, None, None
    hit = np.isfinite(t)
    normal = np.zeros_like(dirs)
    p_loc = np.zeros_like(dirs)
    if hit.any():
        nw = (n_loc[hit] / prim.S) @ prim.R.T
        normal[hit] = nw / np.linalg.norm(nw, axis=-1, keepdims=True)
        p_loc[hit] = (ol if ol.ndim == 1 else ol[hit]) + tl[hit, None] * dln[hit]
    return t, normal, p_loc


@dataclass
class ZBuffer:
    """Per-pixel nearest hit: camera depth z and primitive id per pixel; for the hit pixels (flat
    indices ``hit``, grouped by primitive) the camera-frame normal and the local hit point."""

    depth: np.ndarray   # (H, W) float64, inf = nothing
    prim: np.ndarray    # (H, W) int32, -1 = nothing
    hit: np.ndarray     # (N,) flat pixel indices of the hits
    normal: np.ndarray  # (N, 3)
    local: np.ndarray   # (N, 3)


def pixel_rays(height: int, width: int, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Unit ray directions [H, W, 3] through pixel centres (pixel (u, v) centre is at x=u, y=v)."""
    u = (np.arange(width, dtype=np.float64) - cx) / fx
    v = (np.arange(height, dtype=np.float64) - cy) / fy
    inv = 1.0 / np.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)
    d = np.empty((height, width, 3))
    d[..., 0] = u[None, :] * inv
    d[..., 1] = v[:, None] * inv
    d[..., 2] = inv
    return d


def _rays_at(us: np.ndarray, vs: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    d = np.stack([(us - cx) / fx, (vs - cy) / fy, np.ones_like(us, dtype=np.float64)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def prim_corners(prim: Prim) -> np.ndarray:
    """The 8 corners [8, 3] of the primitive's local bounding box, in its frame."""
    rmax = max(prim.ra, prim.rb)
    lo = np.minimum(prim.pa, prim.pb) - rmax
    hi = np.maximum(prim.pa, prim.pb) + rmax
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return prim.to_frame(corners)


def prim_bbox(prim: Prim, fx: float, fy: float, cx: float, cy: float, height: int, width: int,
              near: float = 1e-3, corners: np.ndarray | None = None) -> tuple[int, int, int, int] | None:
    """Conservative pixel box (x0, x1, y0, y1, half-open) of a primitive's projection (from the corners
    of its local bounding box); the whole image when it reaches behind the near plane; None if unseen."""
    pc = prim_corners(prim) if corners is None else corners
    if (pc[:, 2] <= near).all():
        return None
    if (pc[:, 2] <= near).any():
        return 0, width, 0, height
    us = cx + fx * pc[:, 0] / pc[:, 2]
    vs = cy + fy * pc[:, 1] / pc[:, 2]
    x0, x1 = max(int(np.floor(us.min())) - 1, 0), min(int(np.ceil(us.max())) + 2, width)
    y0, y1 = max(int(np.floor(vs.min())) - 1, 0), min(int(np.ceil(vs.max())) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, x1, y0, y1


BLOCK = 4


def _candidate_pixels(prim: Prim, box: tuple[int, int, int, int], width: int, fx: float, fy: float, cx: float,
                      cy: float) -> np.ndarray:
    """Flat indices of the pixels in ``box`` whose rays may hit ``prim``: rays through the centres of
    BLOCK x BLOCK pixel blocks are cast against the primitive inflated by more than the block's half
    diagonal, so a block whose centre ray misses holds no hit pixel."""
    x0, x1, y0, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if bw * bh <= 2048:
        return ((np.arange(y0, y1)[:, None] * width) + np.arange(x0, x1)[None, :]).reshape(-1)
    bx = np.arange(x0, x1, BLOCK, dtype=np.float64) + (BLOCK - 1) / 2.0
    by = np.arange(y0, y1, BLOCK, dtype=np.float64) + (BLOCK - 1) / 2.0
    uu, vv = np.meshgrid(bx, by)
    d = _rays_at(uu.reshape(-1), vv.reshape(-1), fx, fy, cx, cy)
    centre, rad = prim.bounding_sphere()
    zfar = max(float(centre[2]) + rad, 1e-3)
    delta = (BLOCK * 0.75) * zfar / min(fx, fy) / float(np.min(prim.S))
    fat = Prim(prim.name, prim.c, prim.R, prim.S, prim.pa, prim.pb, prim.ra + delta, prim.rb + delta)
    t, _, _ = intersect(fat, d, want_normals=False)
    hb = np.nonzero(np.isfinite(t))[0]
    if len(hb) == 0:
        return np.zeros(0, dtype=np.int64)
    row0 = y0 + BLOCK * (hb // len(bx))
    col0 = x0 + BLOCK * (hb % len(bx))
    full = (row0 + BLOCK <= y1) & (col0 + BLOCK <= x1)
    off = (np.arange(BLOCK)[:, None] * width + np.arange(BLOCK)[None, :]).reshape(-1)
    idx = ((row0[full] * width + col0[full])[:, None] + off[None, :]).reshape(-1)
    if not full.all():  # blocks cut by the box's right or bottom edge
        rr = np.repeat(row0[~full], BLOCK * BLOCK) + np.tile(np.repeat(np.arange(BLOCK), BLOCK), (~full).sum())
        cc = np.repeat(col0[~full], BLOCK * BLOCK) + np.tile(np.tile(np.arange(BLOCK), BLOCK), (~full).sum())
        keep = (rr < y1) & (cc < x1)
        idx = np.concatenate([idx, rr[keep] * width + cc[keep]])
    return idx


def surface(prim: Prim, dirs: np.ndarray, t: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit camera-frame normals and local points [N, 3] of known hits (distance ``t`` along unit
    camera rays ``dirs``, ``which`` surface of the round cone, as returned by pass 1)."""
    Mt = prim.R / prim.S[None, :]
    ol = (-prim.c @ prim.R) / prim.S
    pa, pb, ra, rb = prim.pa, prim.pb, prim.ra, prim.rb
    ba = pb - pa
    dl = dirs @ Mt                      # t * dl = local displacement along the ray
    p_a = (ol - pa)[None] + t[:, None] * dl
    n = p_a.copy()
    body = which == 1
    if body.any():
        rr = ra - rb
        m0 = float(ba @ ba)
        y = p_a[body] @ ba - ra * rr  # cone body normal: d2 * p_a - ba * y (IQ's rounded cone)
        n[body] = (m0 - rr * rr) * p_a[body] - ba[None] * y[:, None]
    capb = which == 3
    if capb.any():
        n[capb] = p_a[capb] - ba[None]
    nw = (n / prim.S) @ prim.R.T
    nw /= np.sqrt((nw * nw).sum(-1, keepdims=True))
    return nw, p_a + pa


def render_zbuffer(prims: list[Prim], dirs: np.ndarray, fx: float, fy: float, cx: float, cy: float
                   ) -> ZBuffer:
    """Ray cast every primitive (camera at the origin) into a z-buffer.

    Pass 1 finds the nearest primitive per pixel (distances only; nearest primitives first, so pixels
    already covered by something nearer than a primitive's bounding sphere are skipped). Pass 2
    computes normals and local hit points once per pixel, for the winning primitive only.
    """
    h, w, _ = dirs.shape
    depth = np.full(h * w, np.inf)
    dist = np.zeros(h * w)
    which_px = np.zeros(h * w, dtype=np.int8)
    prim_id = np.full(h * w, -1, dtype=np.int32)
    dflat = dirs.reshape(-1, 3)
    corners = [prim_corners(p) for p in prims]
    znears = [float(c[:, 2].min()) for c in corners]  # no point of a primitive is nearer than this
    order = np.argsort(znears, kind="stable")
    for k in order:
        prim = prims[k]
        box = prim_bbox(prim, fx, fy, cx, cy, h, w, corners=corners[k])
        if box is None:
            continue
        idx = _candidate_pixels(prim, box, w, fx, fy, cx, cy)
        if len(idx) == 0:
            continue
        znear = znears[k]
        cur = depth[idx]
        keep = cur > znear
        if not keep.all():
            idx, cur = idx[keep], cur[keep]
            if len(idx) == 0:
                continue
        sub = dflat[idx]
        t, which = intersect(prim, sub, want_normals=False, want_which=True)
        z = t * sub[:, 2]
        closer = z < cur
        if not closer.any():
            continue
        sel = idx[closer]
        depth[sel] = z[closer]
        dist[sel] = t[closer]
        which_px[sel] = which[closer]
        prim_id[sel] = k
    hit = np.nonzero(prim_id >= 0)[0]
    ids_hit = prim_id[hit]
    if len(prims) < 32000:
        ids_hit = ids_hit.astype(np.int16)  # stable argsort of 16-bit keys is a radix sort
    srt = hit[np.argsort(ids_hit, kind="stable")]
    normal = np.zeros((len(srt), 3))
    local = np.zeros((len(srt), 3))
    if len(srt):
        ids, starts = np.unique(prim_id[srt], return_index=True)
        ends = list(starts[1:]) + [len(srt)]
        for k, a, b in zip(ids, starts, ends):
            idx = srt[a:b]
            normal[a:b], local[a:b] = surface(prims[k], dflat[idx], dist[idx], which_px[idx])
    return ZBuffer(depth.reshape(h, w), prim_id.reshape(h, w), srt, normal, local)
