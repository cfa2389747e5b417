"""The generator's labels agree with each other and with the image: normals vs the pointmap's
derivatives, keypoint visibility vs the person mask, albedo x shading vs the image, left/right flip
definitions vs the geometry of mirror-symmetric scenes, and determinism."""
import numpy as np
import pytest
from scipy import ndimage

from humans.shared.synth.render import generate, shading_of
from humans.shared.humans.keypoints import KEYPOINT_INDEX, flip_index
from humans.shared.humans.parts import PART_FLIP

SIZE = 160
SEEDS = [(11, i) for i in range(4)]


@pytest.fixture(scope="module")
def samples():
    return [generate(s, i, SIZE) for s, i in SEEDS]


def _interior(s, extra=None):
    """Pixels whose 3x3 neighbourhood is one primitive of the person (away from silhouettes and creases)."""
    inside = ndimage.minimum_filter(s.mask.astype(np.uint8), 3) > 0
    one = ndimage.maximum_filter(s.prim, 3) == ndimage.minimum_filter(s.prim, 3)
    return inside & one


def _pointmap_normals(P):
    du = P[1:-1, 2:] - P[1:-1, :-2]
    dv = P[2:, 1:-1] - P[:-2, 1:-1]
    c = np.cross(du, dv)
    return c / (np.linalg.norm(c, axis=-1, keepdims=True) + 1e-12)


def test_normals_match_pointmap_derivatives(samples):
    # measured over seeds 11/0..3 at 160 px: mean 0.1-0.7 deg, 99th percentile 1-4 deg, max < 9 deg
    # (curvature of the thinnest primitives at a 2-pixel baseline)
    for s in samples:
        c = _pointmap_normals(s.pointmap.astype(np.float64))
        sel = _interior(s)[1:-1, 1:-1]
        assert sel.sum() > 500
        # the camera looks along +z: du x dv points away from it, outward normals towards it
        cos = -(c * s.normals[1:-1, 1:-1]).sum(-1)
        ang = np.degrees(np.arccos(np.clip(cos, -1, 1)))[sel]
        assert ang.mean() < 1.5 and np.percentile(ang, 99) < 6.0 and ang.max() < 15.0, (ang.mean(), ang.max())
        # and a wrong convention fails the same check: un-negated normals are ~180 degrees off
        assert np.degrees(np.arccos(np.clip((c * s.normals[1:-1, 1:-1]).sum(-1), -1, 1)))[sel].mean() > 150
    m = samples[0].mask
    n = samples[0].normals[m]
    # unit length, and facing the camera: n . (ray to the point) < 0
    assert np.allclose(np.linalg.norm(n, axis=-1), 1, atol=1e-5) and ((n * samples[0].pointmap[m]).sum(-1) < 1e-6).all()
    assert (samples[0].normals[~samples[0].mask] == 0).all() and (samples[0].pointmap[~samples[0].mask] == 0).all()


def test_pointmap_reprojects_to_its_pixels(samples):
    for s in samples:
        cam = s.record["camera"]
        P = s.pointmap.astype(np.float64) / s.record["pointmap_scale"]  # back to metres
        v, u = np.nonzero(s.mask)
        x = cam["cx"] + cam["fx"] * P[v, u, 0] / P[v, u, 2]
        y = cam["cy"] + cam["fy"] * P[v, u, 1] / P[v, u, 2]
        assert np.abs(x - u).max() < 1e-3 and np.abs(y - v).max() < 1e-3
        assert np.isclose(s.record["pointmap_scale"], max(cam["width"], cam["height"]) / cam["fx"])


def test_visible_keypoints_lie_on_the_person(samples):
    n_vis = n_occ = 0
    for s in samples:
        h, w = s.mask.shape
        k = s.keypoints
        vis, occ, out = k[:, 2] == 2, k[:, 2] == 1, k[:, 2] == 0
        xi, yi = np.rint(k[vis, 0]).astype(int), np.rint(k[vis, 1]).astype(int)
        assert ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)).all()
        assert s.mask[yi, xi].all()
        assert (k[out, :2] == 0).all()
        inside = (k[occ, 0] > -0.5) & (k[occ, 0] < w - 0.5) & (k[occ, 1] > -0.5) & (k[occ, 1] < h - 0.5)
        assert inside.all()
        n_vis += vis.sum()
        n_occ += occ.sum()
        x0, y0, bw, bh = s.bbox
        assert s.mask[:, : int(x0)].sum() == 0 and s.mask[:, int(x0 + bw):].sum() == 0
        assert s.mask[: int(y0)].sum() == 0 and s.mask[int(y0 + bh):].sum() == 0 and s.area == s.mask.sum()
    assert n_vis > 200 and n_occ > 20  # both visible and self-occluded keypoints occur


def test_albedo_times_shading_reproduces_the_image(samples):
    for s in samples:
        sh = shading_of(s.normals.astype(np.float64), s.record["light"])
        pred = s.albedo_f.astype(np.float64) * sh * 255
        # where the model holds: not clipped by the sensor, not on the anti-aliased boundary band
        ok = s.mask & (pred.max(-1) < 254.5) & ~s.edge
        assert ok.sum() > 0.4 * s.mask.sum()
        assert s.edge[s.mask].mean() < 0.5
        diff = np.abs(pred - s.image)[ok]
        assert diff.max() <= 0.5 + 1e-6  # only uint8 rounding
        # the stored uint8 albedo: within rounding of the exact albedo; background equals the image
        assert np.abs(s.albedo[s.mask] - s.albedo_f[s.mask] * 255).max() <= 0.5 + 1e-4
        assert np.array_equal(s.albedo[~s.mask], s.image[~s.mask])
        # shading matters: albedo alone does not reproduce the image
        assert np.abs(s.albedo_f[ok] * 255 - s.image[ok]).mean() > 5


def test_flip_definitions_match_mirror_symmetric_scenes():
    fi = flip_index()
    sided_total = unswapped_total = 0
    for i in range(3):
        s = generate(5, i, SIZE, symmetric=True)
        w = s.image.shape[1]
        flipped_parts = PART_FLIP[s.parts[:, ::-1]]
        mism = (flipped_parts != s.parts).sum()
        assert mism <= 0.003 * s.mask.sum() + 2  # a few atlas texels rasterised one pixel apart
        assert np.array_equal(s.mask[:, ::-1], s.mask)
        both = s.mask
        assert np.abs(s.normals[:, ::-1] * np.array([-1, 1, 1]) - s.normals)[both].max() < 1e-5
        assert np.abs(s.pointmap[:, ::-1] * np.array([-1, 1, 1]) - s.pointmap)[both].max() < 1e-4
        k = s.keypoints
        kf = k[fi].copy()
        kf[:, 0] = np.where(kf[:, 2] > 0, w - 1 - kf[:, 0], 0)
        assert (kf[:, 2] == k[:, 2]).mean() > 0.98
        both_lab = (kf[:, 2] > 0) & (k[:, 2] > 0)
        assert both_lab.sum() > 50 and np.abs(kf[both_lab, :2] - k[both_lab, :2]).max() < 1e-6
        # negative control: mirroring without swapping sides disagrees on (almost) every sided pixel
        sided_total += (s.parts != PART_FLIP[s.parts]).sum()
        unswapped_total += (s.parts[:, ::-1] != s.parts).sum()
    assert sided_total > 300 and unswapped_total > 0.9 * sided_total
    # a wrong keypoint flip (swapping the two wrists' partners) is caught by the same comparison
    bad = fi.copy()
    a, b = KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["left_elbow"]
    bad[[a, b]] = bad[[b, a]]
    s = generate(5, 0, SIZE, symmetric=True)
    kb = s.keypoints[bad].copy()
    kb[:, 0] = s.image.shape[1] - 1 - kb[:, 0]
    lab = (kb[:, 2] > 0) & (s.keypoints[:, 2] > 0)
    assert np.abs(kb[lab, :2] - s.keypoints[lab, :2]).max() > 1.0


def test_deterministic_and_seed_dependent():
    a, b = generate(7, 3, 96), generate(7, 3, 96)
    for name in ("image", "albedo", "parts", "mask", "normals", "pointmap", "keypoints"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.record == b.record
    c = generate(8, 3, 96)
    assert not np.array_equal(a.image, c.image)


def test_any_resolution():
    s = generate(2, 0, (96, 144))
    assert s.image.shape == (96, 144, 3) and s.pointmap.shape == (96, 144, 3) and s.parts.shape == (96, 144)
    assert s.record["camera"]["width"] == 144 and s.record["camera"]["cx"] == 71.5
