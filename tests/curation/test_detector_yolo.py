"""The ultralytics YOLO path of stage 3 with randomly initialised models built from ultralytics' own
yaml files (no weights can be downloaded here; ``YOLO_OFFLINE=1``): saved as a user checkpoint, loaded
through ``--detector-weights`` / ``person.weights``, run batched through the detector class, on the
device the process was given."""
from __future__ import annotations

import numpy as np
import pytest

from humans.curation.config import load_pipeline
from humans.curation.detectors import build_detector, torch_device


def _images() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), np.zeros((120, 200, 3), np.uint8), data.coffee()]


def _checkpoint(tmp_path, yaml: str) -> str:
    from ultralytics import YOLO

    path = tmp_path / f"{yaml.split('.')[0]}_random_init.pt"
    YOLO(yaml).save(str(path))
    return str(path)


def _cfg(weights: str):
    # min_score 0 (conf 0): a random-init model then returns boxes, so the format checks see real output
    return load_pipeline("humans-test", overrides={"person.weights": weights, "person.min_score": 0.0,
                                                    "person.analysis_long_side": 160}).stage("person")


@pytest.mark.parametrize("yaml,n_landmarks", [("yolov8n.yaml", None), ("yolov8n-pose.yaml", 17)])
def test_random_init_yolo_runs_batched_through_the_detector_on_cpu(tmp_path, monkeypatch, yaml, n_landmarks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what Ray sets for an actor given no GPU
    det = build_detector(_cfg(_checkpoint(tmp_path, yaml)))
    from PIL import Image

    assert Image.open.__module__ == "PIL.Image"  # ultralytics' process-wide PIL patch undone
    assert det.device == "cpu" and det.pretrained is False and det.name.startswith("ultralytics-yolo:")
    assert next(det.model.model.parameters()).device.type == "cpu"
    images = _images()
    out = det.detect(images)
    assert len(out) == len(images) and det.detect([]) == []
    assert sum(len(people) for people in out) > 0
    for im, people in zip(images, out):
        h, w = im.shape[:2]
        for p in people:
            x0, y0, x1, y1 = p["box"]
            assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h  # original pixels, not the 160 px input
            assert 0 <= p["score"] <= 1 and p["kind"] == "yolo"
            if n_landmarks is None:
                assert p["landmarks"] is None
            else:
                assert len(p["landmarks"]) == n_landmarks and all(len(k) == 3 for k in p["landmarks"])
    # a batch of same-size images (same letterbox) gives what one call per image gives
    same = [images[0], np.ascontiguousarray(images[0][:, ::-1])]
    batched, single = det.detect(same), [det.detect([im])[0] for im in same]
    for a, b in zip(batched, single):
        boxes_a, boxes_b = np.array([p["box"] for p in a]), np.array([p["box"] for p in b])
        assert boxes_a.shape == boxes_b.shape and np.allclose(boxes_a, boxes_b, atol=0.5)


def test_torch_device_follows_what_the_process_was_given(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert torch_device() == "cpu"
    assert torch_device("cuda:1") == "cuda:1" and torch_device("cpu") == "cpu"


def test_random_init_yolo_runs_on_the_gpu_when_one_is_given(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no GPU on this machine")
    det = build_detector(_cfg(_checkpoint(tmp_path, "yolov8n.yaml")))
    out = det.detect(_images())
    assert det.device == "cuda:0" and next(det.model.model.parameters()).device.type == "cuda"
    assert len(out) == 3
