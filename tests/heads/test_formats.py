"""Interchange formats of ``heads eval`` / ``heads predict``: COCO keypoint results (308 keypoints) that
pycocotools loads and scores to the same AP as our eval, indexed part PNGs with a palette, and raw
``.npy`` pointmaps. Heads are trained for a few epochs on a random-init tiny backbone (not pretrained)."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from humans.heads.cli import main
from humans.shared.humans.keypoints import NUM_KEYPOINTS, SIGMAS
from humans.shared.humans.parts import NUM_PARTS, PART_COLORS


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(tmp_path_factory, task: str, synth_data, backbone, size: str, epochs: int):
    out = tmp_path_factory.mktemp(f"fmt_{task}")
    assert main(["train", "--task", task, "--backbone", str(backbone), "--data", str(synth_data), "--out", str(out),
                 "--size", size, "--layers", "-1", "--epochs", str(epochs), "--lr", "3e-3", "--channels", "16",
                 "--batch-size", "8", "--label-stride", "4", "--val-frac", "0.25"]) == 0
    return out / "head.safetensors"


@pytest.fixture(scope="module")
def pose_head(tmp_path_factory, synth_data, random_tiny_backbone):
    return _train(tmp_path_factory, "pose", synth_data, random_tiny_backbone, "96x64", 12)


def test_pose_eval_ap_is_pycocotools_ap_of_the_results_file(pose_head, synth_data, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(pose_head), "--data", str(synth_data), "--out", str(out)]) == 0
    ev = json.loads(out.read_text())
    results = json.loads(open(ev["coco"]["results"]).read())
    assert len(results) == ev["samples"] and all(len(r["keypoints"]) == 3 * NUM_KEYPOINTS for r in results)
    with contextlib.redirect_stdout(io.StringIO()):  # what a user does with the two files, nothing of ours
        gt = COCO(ev["coco"]["ground_truth"])
        dt = gt.loadRes(ev["coco"]["results"])
        e = COCOeval(gt, dt, "keypoints")
        e.params.kpt_oks_sigmas = np.array(ev["coco"]["kpt_oks_sigmas"])
        e.evaluate()
        e.accumulate()
        e.summarize()
    assert np.allclose(ev["coco"]["kpt_oks_sigmas"], SIGMAS)
    assert len(gt.loadCats(1)[0]["keypoints"]) == NUM_KEYPOINTS
    print(f"eval AP {ev['metrics']['AP']:.4f}, pycocotools on the files {e.stats[0]:.4f}")
    # a 12-epoch head on a random-init backbone scores about 0 AP at 308 keypoints; the next test checks
    # the same agreement at a high AP
    for i, key in enumerate(("AP", "AP50", "AP75")):
        assert max(e.stats[i], 0.0) == pytest.approx(ev["metrics"][key], abs=1e-12)


def test_pose_metric_files_give_the_same_nonzero_ap(synth_data, tmp_path):
    """PoseMetric (what eval runs) on predictions = ground truth moved by about half a pixel: a high AP, and
    pycocotools on the written files gives exactly the same numbers."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from humans.heads.data.dataset import DenseData
    from humans.heads.metrics import PoseMetric

    data = DenseData(synth_data)
    metric = PoseMetric(SIGMAS, coco_dir=tmp_path / "coco")
    rng = np.random.default_rng(0)
    for item in data.items("pose")[:20]:
        t = data.load_target(item, "pose")
        kp = np.asarray(t["keypoints"], dtype=np.float64)
        pred = kp.copy()
        pred[:, :2] += rng.normal(0, 0.5, size=(len(kp), 2))
        pred[:, 2] = 0.9
        metric.update(t["image_id"], kp, t["bbox"], t["area"], pred, float(rng.uniform(0.5, 1)))
    ours = metric.compute()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "keypoints_gt.json"))
        e = COCOeval(gt, gt.loadRes(str(tmp_path / "coco" / "keypoints_results.json")), "keypoints")
        e.params.kpt_oks_sigmas = np.asarray(SIGMAS)
        e.evaluate()
        e.accumulate()
        e.summarize()
    print(f"PoseMetric AP {ours['AP']:.4f}, pycocotools on the files {e.stats[0]:.4f}")
    assert ours["AP"] > 0.5  # 0.79 when measured
    assert [e.stats[0], e.stats[1], e.stats[2]] == pytest.approx([ours["AP"], ours["AP50"], ours["AP75"]], abs=1e-12)


def test_pose_predict_writes_coco_results_pycocotools_loads(pose_head, synth_data, tmp_path):
    from pycocotools.coco import COCO

    imgs = [synth_data / "images" / "000001.jpg", synth_data / "images" / "000002.jpg"]
    assert main(["predict", "--checkpoint", str(pose_head), "--out", str(tmp_path), *map(str, imgs)]) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "keypoints_images.json"))
        dt = coco.loadRes(str(tmp_path / "keypoints_results.json"))
    assert sorted(dt.getImgIds()) == [1, 2]
    assert [coco.imgs[i]["file_name"] for i in (1, 2)] == [str(p) for p in imgs]
    ann = dt.loadAnns(dt.getAnnIds(imgIds=[2]))[0]
    kp = np.load(tmp_path / "000002_pose.npy")
    assert np.allclose(np.reshape(ann["keypoints"], (-1, 3)), kp, atol=1e-3) and kp.shape == (NUM_KEYPOINTS, 3)


def test_seg_indexed_png_and_pointmap_npy(tmp_path_factory, synth_data, random_tiny_backbone, tmp_path):
    img = synth_data / "images" / "000001.jpg"
    h, w = np.asarray(Image.open(img)).shape[:2]
    seg = _train(tmp_path_factory, "seg", synth_data, random_tiny_backbone, "64", 1)
    assert main(["predict", "--checkpoint", str(seg), "--out", str(tmp_path), str(img)]) == 0
    im = Image.open(tmp_path / "000001_seg_parts.png")
    assert im.mode == "P" and im.size == (w, h)
    classes = np.asarray(im)
    assert np.array_equal(classes, np.load(tmp_path / "000001_seg.npy")) and classes.max() < NUM_PARTS
    pal = np.asarray(im.getpalette()[:3 * NUM_PARTS]).reshape(-1, 3)
    assert np.array_equal(pal, np.asarray(PART_COLORS)[:NUM_PARTS])
    pm = _train(tmp_path_factory, "pointmap", synth_data, random_tiny_backbone, "64", 1)
    assert main(["predict", "--checkpoint", str(pm), "--out", str(tmp_path), str(img)]) == 0
    xyz = np.load(tmp_path / "000001_pointmap.npy")
    assert xyz.shape == (h, w, 3) and xyz.dtype == np.float32 and np.isfinite(xyz).all()
    assert (tmp_path / "000001_pointmap.png").is_file()
