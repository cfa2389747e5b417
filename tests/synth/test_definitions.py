"""The shared keypoint and part definitions: sizes, unique names, flip permutations, sigmas, skeleton
and the COCO-WholeBody mapping (checked against COCO-WholeBody's own left/right pairs)."""
import numpy as np

from humans.shared.humans import keypoints as K
from humans.shared.humans import parts as PT

# COCO-WholeBody's flip pairs (as in its evaluation tools): body+feet and the iBUG-68 face.
COCO_BODY_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 20), (18, 21), (19, 22)]
IBUG_PAIRS = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
              + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)] + [(48, 54), (49, 53), (50, 52),
              (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])


def test_keypoint_layout():
    assert K.NUM_KEYPOINTS == 308 == len(K.KEYPOINT_NAMES) == len(set(K.KEYPOINT_NAMES))
    assert (len(K.BODY), len(K.HANDS), len(K.FACE)) == (25, 40, 243)
    assert K.KEYPOINT_NAMES[:3] == ["nose", "neck", "right_shoulder"]
    assert all(n.startswith("left_") for n in np.array(K.KEYPOINT_NAMES)[list(K.LEFT_HAND)])
    assert all(n.startswith("face_") for n in np.array(K.KEYPOINT_NAMES)[list(K.FACE)])
    sk = np.array(K.SKELETON)
    assert sk.min() >= 0 and sk.max() < 308 and len(set(map(tuple, np.sort(sk, 1).tolist()))) == len(sk)
    # every keypoint is on the skeleton (connected drawing)
    assert set(sk.reshape(-1).tolist()) == set(range(308))


def test_flip_index_is_an_involution_that_swaps_sides():
    p = K.flip_index()
    assert np.array_equal(p[p], np.arange(308))
    names = K.KEYPOINT_NAMES
    for i, j in K.FLIP_PAIRS:
        a, b = names[i], names[j]
        assert ("left" in a and b == a.replace("left", "right")) or ("right" in a and b == a.replace("right", "left")) \
            or a.rsplit("_", 1)[0] == b.rsplit("_", 1)[0], (a, b)
    centre = [names[i] for i in range(308) if p[i] == i]
    assert "nose" in centre and "neck" in centre and "face_jaw_c" in centre and "face_nose_bridge_3" in centre
    assert not any("left" in n or "right" in n for n in centre)
    # the skeleton maps onto itself under the flip
    sk = {tuple(sorted(e)) for e in K.SKELETON}
    assert {tuple(sorted((int(p[a]), int(p[b])))) for a, b in sk} == sk


def test_sigmas_match_coco_wholebody_where_mapped():
    assert K.SIGMAS.shape == (308,) and (K.SIGMAS > 0.005).all() and (K.SIGMAS < 0.11).all()
    coco17 = [.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089]
    assert np.allclose(K.SIGMAS[K.COCO17_TO_308], coco17)
    assert K.SIGMAS[K.KEYPOINT_INDEX["face_jaw_r16"]] == 0.042 and K.SIGMAS[K.KEYPOINT_INDEX["left_thumb1"]] == 0.022


def test_coco_wholebody_mapping_respects_its_flip_pairs():
    m = K.COCO_WHOLEBODY_TO_308
    p = K.flip_index()
    assert m.shape == (133,) and (m == -1).sum() == 2  # only the two hand roots (= body wrists) are absent
    assert len(set(m[m >= 0].tolist())) == 131
    assert [K.KEYPOINT_NAMES[m[k]] for k in (0, 5, 9, 17)] == ["nose", "left_shoulder", "left_wrist", "left_big_toe"]
    for a, b in COCO_BODY_PAIRS:
        assert p[m[a]] == m[b]
    for a, b in IBUG_PAIRS:
        assert p[m[23 + a]] == m[23 + b], (a, b)
    for k in range(1, 21):
        assert p[m[91 + k]] == m[112 + k]
    kps = np.random.default_rng(0).random((2, 133, 3))
    out = K.coco_wholebody_to_308(kps)
    assert out.shape == (2, 308, 3) and np.array_equal(out[:, m[40]], kps[:, 40])


def test_parts():
    assert PT.NUM_PARTS == 29 and PT.PART_NAMES[0] == "background" and len(set(PT.PART_NAMES)) == 29
    f = PT.PART_FLIP
    assert np.array_equal(f[f], np.arange(29))
    for i, n in enumerate(PT.PART_NAMES):
        if n.startswith("left_"):
            assert PT.PART_NAMES[f[i]] == "right_" + n[5:]
        elif not n.startswith("right_"):
            assert f[i] == i
    assert PT.PART_COLORS.shape == (29, 3) and PT.PART_COLORS.dtype == np.uint8
    assert len({tuple(c) for c in PT.PART_COLORS.tolist()}) == 29
