"""Analytic ray casting of the scaled round cone: hits lie on the surface (distance to the defining
spheres' hull), normals match the surface gradient, misses are misses, and the block culling of the
z-buffer loses no pixel of a thin primitive."""
import numpy as np

from humans.shared.synth.geometry import Prim, frame_along, intersect, pixel_rays, render_zbuffer, rot_y


def _sdf_round_cone_local(p, pa, pb, ra, rb):
    """Distance-like function of the convex hull of two spheres, by dense sampling of the spheres
    along the segment (exact enough for a test: the hull is the union of interpolated spheres)."""
    ts = np.linspace(0, 1, 401)
    c = pa[None] + ts[:, None] * (pb - pa)[None]
    r = ra + ts * (rb - ra)
    d = np.linalg.norm(p[:, None, :] - c[None], axis=-1) - r[None]
    return d.min(1)


def test_hits_lie_on_the_surface_with_gradient_normals():
    rng = np.random.default_rng(0)
    prim = Prim("t", np.array([0.05, -0.02, 2.0]), frame_along(np.array([0.3, 1.0, 0.2]), np.array([1.0, 0, 0])),
                np.array([1.0, 0.8, 0.6]), np.zeros(3), np.array([0.0, 0.5, 0.0]), 0.12, 0.06)
    d = rng.normal(size=(4000, 3)) * np.array([0.12, 0.2, 0]) + np.array([0, 0, 1.0])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t, n, loc = intersect(prim, d)
    hit = np.isfinite(t)
    assert 300 < hit.sum() < 3900
    # hit points are on the local surface
    sdf = _sdf_round_cone_local(loc[hit][:600], prim.pa, prim.pb, prim.ra, prim.rb)
    assert np.abs(sdf).max() < 2e-4
    # the camera-frame point is the local point mapped back
    P = t[hit, None] * d[hit]
    assert np.allclose(prim.to_frame(loc[hit]), P, atol=1e-9)
    # normals: unit, facing the ray, and equal to the numerical gradient of the (camera-frame) surface
    assert np.allclose(np.linalg.norm(n[hit], axis=1), 1) and ((n[hit] * d[hit]).sum(1) < 0).all()
    eps = 1e-4

    def f(q):  # camera frame -> local -> sdf
        ql = ((q - prim.c) @ prim.R) / prim.S
        return _sdf_round_cone_local(ql, prim.pa, prim.pb, prim.ra, prim.rb)

    sel = P[:200]
    g = np.stack([(f(sel + eps * e) - f(sel - eps * e)) / (2 * eps) for e in np.eye(3)], axis=1)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip((g * n[hit][:200]).sum(1), -1, 1)))
    assert np.median(ang) < 0.5 and ang.max() < 3.0
    # rays that miss really miss: points along them never enter the shape
    miss = np.nonzero(~hit)[0][:30]
    ts = np.linspace(1.0, 3.0, 200)
    along = (ts[None, :, None] * d[miss][:, None, :]).reshape(-1, 3)
    assert f(along).min() > -1e-3


def test_block_culling_keeps_thin_primitives():
    h = w = 200
    fx = fy = 300.0
    dirs = pixel_rays(h, w, fx, fy, (w - 1) / 2, (h - 1) / 2)
    # a finger-thin capsule (radius ~ 0.8 px) seen diagonally, plus a sphere far behind it
    a, b = np.array([-0.5, -0.4, 4.0]), np.array([0.5, 0.45, 4.3])
    fin = Prim("finger", a, frame_along(b - a, np.array([1.0, 0, 0])), np.ones(3), np.zeros(3),
               np.array([0.0, np.linalg.norm(b - a), 0]), 0.011, 0.011)
    ball = Prim("ball", np.array([0.0, 0.0, 8.0]), rot_y(0.3), np.ones(3), np.zeros(3), np.zeros(3), 1.0, 1.0)
    zb = render_zbuffer([fin, ball], dirs, fx, fy, (w - 1) / 2, (h - 1) / 2)
    # brute force: every pixel against every primitive
    flat = dirs.reshape(-1, 3)
    t0 = intersect(fin, flat, want_normals=False)[0]
    t1 = intersect(ball, flat, want_normals=False)[0]
    want = np.where(np.isfinite(t0) & (t0 <= t1), 0, np.where(np.isfinite(t1), 1, -1))
    assert (want == 0).sum() > 150
    assert np.array_equal(zb.prim.reshape(-1), want)
