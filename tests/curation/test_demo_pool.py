"""curation.demo_pool: the labelled pool has the promised categories, each measurably what its label
says, decodes (or fails to) with the named reason, is reproducible, and its people are found by a
real pretrained detector (MediaPipe pose) while its person-free scenes are not."""
from __future__ import annotations

import importlib.util
import itertools

import cv2
import imagehash
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from humans.curation.demo_pool import (CATEGORIES, EXPECTED_STAGE, KEPT_CATEGORIES, LABEL_COLUMNS, SCALES,
                                make_demo_pool, scale_counts)
from humans.curation.sources import plan_pool, read_task
from humans.shared.imageio import ImageError, decode_rgb, read_header
from humans.shared.schema import KEY_RE

DECODE_REASONS = {"corrupt": {"corrupt"}, "truncated_file": {"truncated"}, "empty_file": {"empty"},
                  "decompression_bomb": {"decompression_bomb"}}


@pytest.fixture(scope="module")
def pool(demo_pool_dir):
    """The session's small pool (tests/conftest.py: make_demo_pool(..., scale="small"), seed 0)."""
    root = demo_pool_dir
    labels = pq.read_table(root / "labels.parquet").to_pylist()
    decoded = {}
    for r in labels:
        data = (root / r["file"]).read_bytes()
        try:
            decoded[r["key"]] = decode_rgb(data, r["key"])
        except ImageError as exc:
            decoded[r["key"]] = exc
    return root, labels, decoded


def _gray512(rgb):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    s = 512 / max(gray.shape)
    return cv2.resize(gray, (round(gray.shape[1] * s), round(gray.shape[0] * s)), interpolation=cv2.INTER_AREA) \
        if s < 1 else gray


def test_counts_columns_and_files_agree(pool):
    root, labels, _ = pool
    assert tuple(pq.read_schema(root / "labels.parquet").names) == LABEL_COLUMNS
    counts = {c: sum(r["category"] == c for r in labels) for c in CATEGORIES}
    assert counts == SCALES["small"] and 100 <= len(labels) <= 150
    files = sorted(p.relative_to(root).as_posix() for p in (root / "images").iterdir())
    assert files == sorted(r["file"] for r in labels)  # nothing unlabelled, nothing missing
    keys = [r["key"] for r in labels]
    assert len(set(keys)) == len(keys) and all(KEY_RE.match(k) for k in keys)
    for r in labels:
        assert r["file"].startswith(f"images/{r['key']}.")
        exp = r["expected_reject_stage"]
        if r["category"] == "near_dup":
            assert exp in ("phash", "embedding")
        else:
            assert exp == EXPECTED_STAGE[r["category"]]
        assert r["has_person"] == (r["n_persons"] > 0)
    assert sum(r["has_person"] for r in labels if r["category"] in KEPT_CATEGORIES) == 42
    # the pool reads through curation.sources with the labels' keys
    read = [it for t in plan_pool(str(root), items_per_task=50) for it in read_task(t)]
    assert sorted(it.key for it in read) == sorted(keys) and all(it.error is None for it in read)


def test_broken_files_fail_with_their_reason_and_the_rest_decode(pool):
    _, labels, decoded = pool
    for r in labels:
        out = decoded[r["key"]]
        if r["category"] in DECODE_REASONS:
            assert isinstance(out, ImageError) and out.reason in DECODE_REASONS[r["category"]], (r["key"], out)
        else:
            assert isinstance(out, np.ndarray) and out.ndim == 3, (r["key"], out)


def test_resolution_aspect_and_odd_modes(pool):
    root, labels, decoded = pool
    for r in labels:
        cat = r["category"]
        if cat in DECODE_REASONS:
            continue
        hdr = read_header((root / r["file"]).read_bytes())
        short, aspect = min(hdr.width, hdr.height), max(hdr.width, hdr.height) / min(hdr.width, hdr.height)
        assert decoded[r["key"]].shape[:2] == (hdr.height, hdr.width)
        if cat == "low_res":
            assert short < 256
        elif cat == "bad_aspect":
            assert short >= 512 and aspect > 2.5
        elif cat == "near_dup":  # resized copies are smaller, still far above the 256 px floor
            assert short >= 360 and aspect <= 2.0, (r["key"], hdr)
        else:
            assert short >= 512 and aspect <= 2.0, (r["key"], hdr)
        if cat == "cmyk":
            assert hdr.mode == "CMYK" and hdr.format == "JPEG"
        elif cat == "sixteen_bit":
            assert hdr.mode.startswith("I;16") and decoded[r["key"]].max() > 200  # scaled, not clipped to black
        elif cat == "palette":
            assert hdr.mode == "P"
        elif cat == "exif_rotated":
            assert hdr.exif_orientation in (3, 6, 8)
            im = Image.open(root / r["file"])
            stored = im.size
            assert (hdr.width, hdr.height) == (stored[::-1] if hdr.exif_orientation in (6, 8) else stored)


def test_quality_rejects_are_measurably_degraded(pool):
    root, labels, decoded = pool
    by_cat = {c: [r for r in labels if r["category"] == c] for c in CATEGORIES}

    def stat(cat, fn):
        return [fn(decoded[r["key"]]) for r in by_cat[cat]]

    sharp = lambda rgb: cv2.Laplacian(_gray512(rgb), cv2.CV_64F).var()  # noqa: E731
    mean = lambda rgb: _gray512(rgb).mean()  # noqa: E731

    def entropy(rgb):
        p = np.bincount(_gray512(rgb).ravel(), minlength=256) / _gray512(rgb).size
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    good = [decoded[r["key"]] for r in by_cat["person"] + by_cat["no_person"]]
    assert min(sharp(g) for g in good) > 50 and 40 < min(mean(g) for g in good) and max(mean(g) for g in good) < 215
    assert min(entropy(g) for g in good) > 4.5
    assert max(stat("blurred", sharp)) < 15
    assert min(stat("overexposed", mean)) > 215
    assert max(stat("underexposed", mean)) < 25
    assert max(stat("low_information", entropy)) < 3.0
    for r in by_cat["heavy_compression"]:
        with Image.open(root / r["file"]) as im:
            luma = np.asarray(im.quantization[0], dtype=float)
        assert luma.mean() > 150  # IJG tables at quality <= 8 (quality 90 averages ~3)
    for r in by_cat["person"]:
        if r["file"].endswith(".jpg"):
            with Image.open(root / r["file"]) as im:
                assert np.asarray(im.quantization[0], dtype=float).mean() < 20  # quality >= 85


def test_duplicates_and_distinct_kept_images(pool):
    root, labels, decoded = pool
    by_key = {r["key"]: r for r in labels}
    phash = {k: imagehash.phash(Image.fromarray(v)) for k, v in decoded.items() if isinstance(v, np.ndarray)}
    for r in labels:
        if r["category"] == "exact_dup":
            orig = by_key[r["dup_of"]]
            assert (root / r["file"]).read_bytes() == (root / orig["file"]).read_bytes()
            assert r["dup_group"] == orig["dup_group"] != ""
        elif r["category"] == "near_dup":
            dist = phash[r["key"]] - phash[r["dup_of"]]
            assert r["dup_group"] == by_key[r["dup_of"]]["dup_group"] != ""
            assert (r["expected_reject_stage"] == "phash") == (dist <= 8), (r["key"], dist)
            assert (root / r["file"]).read_bytes() != (root / by_key[r["dup_of"]]["file"]).read_bytes()
    near = [r for r in labels if r["category"] == "near_dup"]
    assert sum(r["expected_reject_stage"] == "phash" for r in near) >= len(near) // 2
    kept = [k for k, r in by_key.items() if r["category"] in KEPT_CATEGORIES]
    dists = [phash[a] - phash[b] for a, b in itertools.combinations(kept, 2)]
    assert min(dists) > 10  # distinct kept images are not near duplicates of each other


def test_same_seed_same_bytes(tmp_path):
    tiny = {c: 1 for c in CATEGORIES} | {"person": 7, "decompression_bomb": 0}
    a = make_demo_pool(tmp_path / "a", seed=3, counts=tiny)
    b = make_demo_pool(tmp_path / "b", seed=3, counts=tiny)
    files = sorted(p.name for p in (a / "images").iterdir())
    assert files == sorted(p.name for p in (b / "images").iterdir()) and len(files) == sum(tiny.values())
    assert all((a / "images" / f).read_bytes() == (b / "images" / f).read_bytes() for f in files)
    assert (a / "labels.parquet").read_bytes() == (b / "labels.parquet").read_bytes()
    sizes = {f: (a / "images" / f).stat().st_size for f in files}
    assert all(n > 2000 for f, n in sizes.items() if not f.startswith(("empty_file", "low_res")))
    with pytest.raises(FileExistsError):
        make_demo_pool(a, seed=3, counts=tiny)
    with pytest.raises(ValueError, match="unknown categories"):
        scale_counts("small", counts={"selfies": 3})
    with pytest.raises(ValueError, match="scale"):
        scale_counts("huge")


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                    reason="optional extra not installed: mediapipe (HUMANS_EXTRAS=mediapipe bash scripts/install.sh)")
def test_real_detector_finds_the_people(pool):
    from humans.curation.pool.detectability import detection_rates

    root, _, _ = pool
    rates = detection_rates(root, ("person", "no_person"), limit=14, hog=False)
    assert rates["person"]["n"] == 14 and rates["no_person"]["n"] == 14
    assert rates["person"]["mediapipe_pose"] >= 0.75  # 0.88 over all 34 when measured
    assert rates["no_person"]["mediapipe_pose"] <= 0.15  # 0.0 when measured
