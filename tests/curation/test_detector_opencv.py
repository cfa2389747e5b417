"""The default install's OpenCV detector: the profile-face passes (its dearest part) run only when HOG
and the frontal cascade found nobody, and skipping them does not change what the stage decides."""
from __future__ import annotations

import numpy as np
import pytest

from humans.curation.config import load_pipeline
from humans.curation.detectors import OpenCvDetector
from humans.curation.stages import person


def _counting(det: OpenCvDetector) -> list[str]:
    calls: list[str] = []
    inner = det._faces

    def faces(grey, kind, at):
        calls.append(kind)
        return inner(grey, kind, at)

    det._faces = faces
    return calls


@pytest.fixture(scope="module")
def cfg():
    return load_pipeline("humans-test", overrides={"person.detector": "opencv"}).stage("person")


def test_profile_passes_only_when_nobody_was_found(cfg):
    from skimage import data

    lazy, eager = OpenCvDetector(cfg), OpenCvDetector(cfg)
    assert lazy.PROFILE == "if_no_person"
    eager.PROFILE = "always"
    calls_lazy, calls_eager = _counting(lazy), _counting(eager)
    images = [data.astronaut(), data.chelsea()]  # a frontal face; no person
    got_lazy, got_eager = lazy.detect(images), eager.detect(images)
    # astronaut: frontal only; cat: frontal + profile + mirrored profile; eager: all three on both
    assert calls_lazy == ["frontalface_default", "frontalface_default", "profileface", "profileface"]
    assert calls_eager == ["frontalface_default", "profileface", "profileface"] * 2
    for a, b in zip(got_lazy, got_eager):
        assert person.decide(a, cfg)[:2] == person.decide(b, cfg)[:2]
    assert person.decide(got_lazy[0], cfg)[0] and not person.decide(got_lazy[1], cfg)[0]
    best = max(got_lazy[0], key=lambda p: p["score"])
    assert best["score"] == pytest.approx(max(got_eager[0], key=lambda p: p["score"])["score"])


def test_profile_passes_run_where_body_and_frontal_face_miss(cfg):
    """skimage's camera man: no upright body for HOG and no frontal face, so both profile passes run."""
    from skimage import data

    det = OpenCvDetector(cfg)
    calls = _counting(det)
    people = det.detect([np.repeat(data.camera()[:, :, None], 3, axis=2)])[0]
    assert calls == ["frontalface_default", "profileface", "profileface"]
    assert all(p["kind"] in ("hog", "face") for p in people)
