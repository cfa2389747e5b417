"""Stage logic on known data: quality measures, pHash LSH banding vs brute force, union-find,
faiss flat vs IVF-partitioned search, the real bundled detector and a random-init YOLO checkpoint."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageFilter

from humans.curation.config import load_pipeline
from humans.curation.stages import clusters, embedding, phash, quality


def _photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _jpeg(rgb: np.ndarray, q: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=q)
    return buf.getvalue()


def test_quality_measures_separate_good_from_damaged():
    cfg = load_pipeline("humans-test").stage("quality")
    rgb = _photo()
    good = quality.measure(rgb, _jpeg(rgb, 92), cfg)
    blurred = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(6)))
    blur = quality.measure(blurred, _jpeg(blurred, 92), cfg)
    dark = quality.measure((rgb * 0.05).astype(np.uint8), b"", cfg)
    flat = quality.measure(np.full((300, 300, 3), 120, np.uint8), b"", cfg)
    assert good["sharpness"] > 50 * blur["sharpness"]
    assert dark["mean"] < 10 and good["mean"] > 80
    assert flat["entropy"] == 0 and good["entropy"] > 7
    assert quality.decide(good, cfg)[0]
    assert quality.decide(blur, cfg)[1] == "blurry"
    assert quality.decide(dark, cfg)[1] == "underexposed"
    assert quality.decide(flat, cfg)[1] == "low_information"
    # JPEG quality is recovered from the quantisation tables within a few points
    for q in (10, 30, 50, 75, 90):
        est = quality.jpeg_quality(_jpeg(rgb, q))
        assert abs(est - q) <= 3, (q, est)
    low = _jpeg(rgb, 5)
    lowq = quality.measure(np.asarray(Image.open(io.BytesIO(low)).convert("RGB")), low, cfg)
    assert lowq["blockiness"] > 2.0 > good["blockiness"]
    assert quality.decide(lowq, cfg)[1] == "compressed"


def test_phash_banding_finds_exactly_the_brute_force_pairs():
    rng = np.random.default_rng(0)
    n, nbits, maxd = 300, 64, 6
    base = rng.integers(0, 2, size=(n, nbits)).astype(bool)
    # plant near duplicates at distances 0..maxd+2
    for i in range(40):
        j = n - 1 - i
        base[j] = base[i]
        flip = rng.choice(nbits, size=i % (maxd + 3), replace=False)
        base[j, flip] ^= True
    hexes = [bytes(np.packbits(b)).hex() for b in base]
    keys = [f"k{i:04d}" for i in range(n)]
    dist = (base[:, None, :] != base[None, :, :]).sum(2)
    truth = {(keys[i], keys[j]) for i in range(n) for j in range(i + 1, n) if dist[i, j] <= maxd}
    assert len(truth) >= 30
    for bands, partitions in ((8, 1), (8, 3), (16, 4)):  # bands > maxd: recall is guaranteed
        maps = [phash.band_rows(keys[s:s + 50], hexes[s:s + 50], nbits, bands, partitions,
                                [(1, 1, k) for k in keys[s:s + 50]]) for s in range(0, n, 50)]
        found = set()
        for p in range(partitions):
            edges, attrs = phash.bucket_pairs([m[p] for m in maps], nbits, maxd)
            found |= {(a, b) for a, b, d in edges}
            assert all(d <= maxd for _, _, d in edges) and set(attrs) >= {k for e in edges for k in e[:2]}
        assert found == truth, (bands, partitions)


def test_clusters_pick_highest_resolution_then_key_whatever_the_edge_order():
    rank = {"a": (-100, -5, "a"), "b": (-400, -5, "b"), "c": (-400, -5, "c"), "d": (-10, -1, "d")}
    e1 = [("a", "b"), ("b", "c"), ("d", "d")]
    e2 = [("c", "b"), ("a", "b")][::-1]
    r1, r2 = clusters.resolve_clusters(e1, rank), clusters.resolve_clusters(e2, rank)
    assert r1["a"] == r1["c"] == ("b", 3) and r2["a"] == ("b", 3)
    assert r1["d"] == ("d", 1)


def _clustered(n_clusters: int, per: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    x = np.repeat(centers, per, axis=0) + 0.02 * rng.normal(size=(n_clusters * per, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def test_faiss_flat_and_ivf_paths_agree_on_near_duplicates():
    x = _clustered(300, 3)  # 300 groups of 3 near-identical vectors
    flat, info_f = embedding.dedup_edges(x, threshold=0.99, ivf_threshold=10**9)
    ivf, info_i = embedding.dedup_edges(x, threshold=0.99, ivf_threshold=100, nprobe=2)
    assert info_f["index"] == "flat" and info_i["index"] == "ivf" and info_i["nlist"] == int(4 * np.sqrt(900))
    truth = {(i, j) for g in range(300) for i in range(3 * g, 3 * g + 3) for j in range(i + 1, 3 * g + 3)}
    assert {(i, j) for i, j, _ in flat} == truth
    got = {(i, j) for i, j, _ in ivf}
    assert got <= truth and len(got) >= 0.97 * len(truth)


def test_random_init_backbone_embedder_is_stated_and_keeps_layout():
    e = embedding.BackboneEmbedder(None, image_size=64, grids=(1, 2), threads=2, random_config="study-s8")
    assert e.random_init and "RANDOM INIT" in e.description and e.dim == 128 * 5
    rgb = _photo()
    from skimage import data

    crop = rgb[10:-10, 10:-10]
    v = e.embed([rgb, crop, data.chelsea(), rgb[:, ::-1]])
    assert v.shape == (4, 640) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert v[0] @ v[1] > v[0] @ v[3]  # the 2x2 cells see a mirror image as a different layout


def test_embedding_input_decoded_at_reduced_size_embeds_as_the_full_decode():
    """The embedding stage decodes a web-size JPEG at a reduced DCT scale (long side >= 4x the embedder's
    input): the vector moves far less than between a photo and a re-framed copy of it."""
    from humans.shared.imageio import decode_rgb, decode_rgb_reduced

    e = embedding.BackboneEmbedder(None, image_size=96, grids=(1, 2), threads=2, random_config="study-s8")
    rgb = _photo()
    big = np.asarray(Image.fromarray(rgb).resize((2000, 2000 * rgb.shape[0] // rgb.shape[1]), Image.BICUBIC))
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="JPEG", quality=90)
    reduced, scale = decode_rgb_reduced(buf.getvalue(), "big.jpg", 4 * e.size, max_scale=8)
    assert scale == 4 and max(reduced.shape[:2]) == 500
    h, w = big.shape[:2]
    reframed = big[h // 10:, w // 10:]  # a 10 % re-framing: what the stage must call a near duplicate
    v_full, v_red, v_ref = e.embed([decode_rgb(buf.getvalue(), "big.jpg"), reduced, reframed])
    assert np.linalg.norm(v_full - v_red) < 0.25 * np.linalg.norm(v_full - v_ref)


def test_whitening_removes_the_shared_direction_and_adapts_to_small_pools():
    rng = np.random.default_rng(0)
    common = rng.normal(size=64)
    x = common * 3 + rng.normal(size=(400, 64))  # every vector shares one strong direction
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    raw = x[:200] @ x[200:].T
    w = embedding.fit_whitening(x, 32, 1.0)
    y = w.apply(x)
    white = y[:200] @ y[200:].T
    assert raw.mean() > 0.8 and abs(white.mean()) < 0.05  # unrelated vectors: cosine ~0 once whitened
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5) and y.shape == (400, 32)
    assert embedding.fit_whitening(x[:40], 32).proj.shape[1] == 10  # n // 4 directions for 40 vectors
    assert embedding.fit_whitening(x[:7], 32) is None and embedding.fit_whitening(x, 0) is None


def test_random_init_open_clip_embedder_is_stated_and_sees_near_duplicates():
    e = embedding.OpenClipEmbedder("ViT-S-32", None, image_size=64, threads=2)  # small arch: fast to build
    assert e.random_init and "RANDOM INIT" in e.description
    rgb = _photo()
    from skimage import data

    crop = rgb[10:-10, 10:-10]
    v = e.embed([rgb, crop, data.chelsea()])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]


def _mediapipe_installed() -> bool:
    from humans.curation.detectors import optional_available

    return optional_available("mediapipe")


@pytest.mark.skipif(not _mediapipe_installed(), reason="optional extra not installed: mediapipe "
                    "(HUMANS_EXTRAS=mediapipe bash scripts/install.sh)")
def test_bundled_mediapipe_detector_finds_people_with_landmarks_and_not_in_a_cat():
    from skimage import data

    from humans.curation.detectors import build_detector

    det = build_detector(load_pipeline("humans-test").stage("person"))
    assert det.pretrained and det.name.startswith("mediapipe")
    people, cat = det.detect([data.astronaut(), data.chelsea()])
    assert len(people) >= 1 and people[0]["score"] > 0.9 and len(people[0]["landmarks"]) == 33
    x0, y0, x1, y1 = people[0]["box"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert cat == []


def test_default_install_opencv_detector_finds_the_astronaut_not_the_cat():
    """OpenCV's pretrained HOG people detector + Haar face cascade, shipped inside opencv-python."""
    from skimage import data

    from humans.curation.detectors import build_detector

    cfg = load_pipeline("humans-test", overrides={"person.detector": "opencv"}).stage("person")
    det = build_detector(cfg)
    assert det.pretrained and det.name.startswith("opencv")
    people, cat = det.detect([data.astronaut(), data.chelsea()])
    assert any(p["score"] >= cfg.min_score for p in people)
    x0, y0, x1, y1 = max(people, key=lambda p: p["score"])["box"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert not any(p["score"] >= cfg.min_score for p in cat)


def test_auto_detector_needs_no_optional_package():
    from humans.curation.detectors import build_detector, resolve_kind

    cfg = load_pipeline("humans-test").stage("person")
    assert resolve_kind(cfg) == ("mediapipe" if _mediapipe_installed() else "opencv")
    assert build_detector(cfg).pretrained


def test_yolo_backend_loads_a_user_checkpoint(tmp_path):
    """The `--detector-weights` path, exercised with a RANDOMLY INITIALISED YOLO (no weights offline)."""
    from ultralytics import YOLO

    from humans.curation.detectors import build_detector

    path = tmp_path / "yolov8n_random_init.pt"
    YOLO("yolov8n.yaml").save(str(path))
    cfg = load_pipeline("humans-test", overrides={"person.detector": "auto", "person.weights": str(path),
                                                   "person.analysis_long_side": 160})
    det = build_detector(cfg.stage("person"))
    assert det.name == "ultralytics-yolo:yolov8n_random_init.pt" and det.pretrained is False
    out = det.detect([_photo(), np.zeros((120, 200, 3), np.uint8)])
    assert len(out) == 2
    for people in out:
        for p in people:
            assert len(p["box"]) == 4 and 0 <= p["score"] <= 1 and p["kind"] == "yolo"
    with pytest.raises(FileNotFoundError, match="not found"):
        build_detector(cfg.stage("person").model_copy(update={"weights": str(tmp_path / "missing.pt")}))
    assert os.path.getsize(path) > 1000


def test_blockiness_survives_a_draft_decode():
    """Decoding a JPEG at 1/2 or 1/4 scale (Pillow draft, DCT scaling) keeps its block edges every 4 or 2
    pixels: measured there, heavy compression is still told from a good encode, though by a smaller
    ratio (measured 3.4 / 1.9 / 1.3 at scales 1 / 2 / 4 against 1.1 for a good encode), so the
    ``max_blockiness`` threshold is calibrated for full decodes only; the compression rule still
    rejects such a file at every scale through its quantisation tables (header, no pixels)."""
    import cv2

    cfg = load_pipeline("humans-test").stage("quality")
    big = cv2.resize(_photo(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    seen = {}
    for q in (8, 92):
        data = _jpeg(big, q)
        for scale in (1, 2, 4):
            im = Image.open(io.BytesIO(data))
            im.draft("RGB", (1536 // scale, 1536 // scale))
            rgb = np.asarray(im.convert("RGB"))
            assert rgb.shape[0] == 1536 // scale
            seen[q, scale] = quality.blockiness(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), block=8 // scale)
            scores = quality.measure(rgb, data, cfg, decode_scale=scale)
            assert scores["blockiness"] == round(seen[q, scale], 4)
            assert (quality.decide(scores, cfg)[1] == "compressed") == (q == 8)
    assert seen[8, 1] > cfg.max_blockiness > seen[92, 1]
    for scale in (1, 2, 4):
        assert seen[8, scale] > 1.15 * seen[92, scale], seen
    with pytest.raises(ValueError, match="allowed 1, 2, 4"):
        quality.measure(big, b"", cfg, decode_scale=8)
