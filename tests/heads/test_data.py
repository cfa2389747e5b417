"""Readers and adapters: COCO-WholeBody -> 308, bad annotations named by file and field, .exr maps,
flips and crops."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from humans.heads.data import AnnotationError, DenseData, Item, load_keypoints
from humans.heads.data.io import read_dense, write_exr
from humans.heads.data.transforms import decode_heatmaps, gaussian_heatmaps
from humans.shared.humans.keypoints import COCO_WHOLEBODY_NAMES, COCO_WHOLEBODY_TO_308, KEYPOINT_NAMES, flip_index

from heads_testdata import write_tiny_dataset


def _wholebody_ann(rng, split: bool) -> dict:
    k = np.zeros((133, 3))
    k[:, 0] = rng.uniform(5, 95, 133)
    k[:, 1] = rng.uniform(5, 95, 133)
    k[:, 2] = 2
    k[3, :] = 0  # left ear not labelled
    ann = {"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "area": 5000.0}
    if split:
        bounds = [("keypoints", 0, 17), ("foot_kpts", 17, 23), ("face_kpts", 23, 91),
                  ("lefthand_kpts", 91, 112), ("righthand_kpts", 112, 133)]
        for name, a, b in bounds:
            ann[name] = k[a:b].ravel().tolist()
    else:
        ann["keypoints"] = k.ravel().tolist()
    return ann, k


@pytest.mark.parametrize("split", [True, False])
def test_coco_wholebody_maps_into_308(tmp_path, split):
    rng = np.random.default_rng(0)
    ann, k133 = _wholebody_ann(rng, split)
    path = tmp_path / "wb.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
                                "annotations": [ann]}))
    ks = load_keypoints(path)
    assert ks.format == ("coco-wholebody-split" if split else "coco-wholebody-133")
    kp = ks.people[0].keypoints
    assert kp.shape == (308, 3)
    mapped = COCO_WHOLEBODY_TO_308
    # every mapped COCO-WholeBody keypoint is present at its 308 index with its coordinates
    for src in np.nonzero(mapped >= 0)[0]:
        assert np.allclose(kp[mapped[src]], k133[src], atol=1e-4), COCO_WHOLEBODY_NAMES[src]
    # the rest of the 308 layout is missing (v = 0): 308 - 131 mapped, plus the unlabelled left ear
    assert int((kp[:, 2] > 0).sum()) == 131 - 1
    assert kp[KEYPOINT_NAMES.index("left_ear"), 2] == 0
    assert np.allclose(kp[KEYPOINT_NAMES.index("nose"), :2], k133[0, :2], atol=1e-4)
    # the hand roots (duplicates of the wrists) are not mapped
    assert mapped[COCO_WHOLEBODY_NAMES.index("left_hand_root")] == -1


def _bad(tmp_path, mutate, name="bad.json"):
    rng = np.random.default_rng(1)
    ann, _ = _wholebody_ann(rng, split=False)
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
            "annotations": [ann, json.loads(json.dumps(ann))]}
    mutate(data)
    p = tmp_path / name
    p.write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as exc:
        load_keypoints(p)
    assert str(p) in str(exc.value)
    return exc.value


def test_bad_keypoint_annotations_name_file_and_field(tmp_path):
    e = _bad(tmp_path, lambda d: d["annotations"][1].update(keypoints=[1.0] * 30))
    assert e.field == "annotations[1].keypoints" and "10 keypoints" in e.problem
    e = _bad(tmp_path, lambda d: d["annotations"][0]["keypoints"].__setitem__(5, 3))
    assert e.field == "annotations[0].keypoints[5]" and "visibility" in e.problem
    e = _bad(tmp_path, lambda d: d["annotations"][1].update(image_id=42))
    assert e.field == "annotations[1].image_id"
    e = _bad(tmp_path, lambda d: d["annotations"][0].update(bbox=[0, 0, -5, 10]))
    assert e.field == "annotations[0].bbox"
    e = _bad(tmp_path, lambda d: d["images"][0].pop("width"))
    assert e.field == "images[0].width"
    e = _bad(tmp_path, lambda d: d["annotations"][1]["keypoints"].__setitem__(0, 1e6))
    assert e.field == "annotations[1].keypoints" and "outside" in e.problem
    e = _bad(tmp_path, lambda d: d["annotations"][0]["keypoints"].__setitem__(0, "x"))
    assert e.field == "annotations[0].keypoints[0]"
    # the fast path (plain finite numbers) hands anything else to the per-number check, which names it
    e = _bad(tmp_path, lambda d: d["annotations"][1]["keypoints"].__setitem__(4, True))
    assert e.field == "annotations[1].keypoints[4]" and "not a finite number" in e.problem
    e = _bad(tmp_path, lambda d: d["annotations"][0]["keypoints"].__setitem__(7, float("nan")))
    assert e.field == "annotations[0].keypoints[7]" and "not a finite number" in e.problem


def test_bad_label_files_name_file_and_field(tmp_path):
    root = write_tiny_dataset(tmp_path / "d", n=2)
    data = DenseData(root)
    # parts with a class out of range
    p = np.zeros((40, 32), np.uint8)
    p[0, 0] = 40
    im = Image.fromarray(p, mode="P")
    im.putpalette(list(range(256)) * 3)  # a full palette keeps 8-bit indices
    im.save(root / "parts" / "000001.png")
    with pytest.raises(AnnotationError, match=r"000001.png: field 'parts': class values \[40\]"):
        data.load(Item("000001"), "seg", (32, 32))
    # an RGB parts image is not an indexed PNG
    Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(root / "parts" / "000001.png")
    with pytest.raises(AnnotationError, match="mode 'RGB'"):
        data.load_target(Item("000001"), "seg")
    # normals of the wrong size / shape / non-unit
    np.save(root / "normals" / "000000.npy", np.zeros((10, 10, 3), np.float16))
    with pytest.raises(AnnotationError, match=r"000000.npy: field 'normal': size 10x10"):
        data.load_target(Item("000000"), "normal")
    np.save(root / "normals" / "000000.npy", np.zeros((40, 32), np.float16))
    with pytest.raises(AnnotationError, match="expected HxWx3"):
        data.load_target(Item("000000"), "normal")
    np.save(root / "normals" / "000000.npy", np.full((40, 32, 3), 0.2, np.float16))
    with pytest.raises(AnnotationError, match="not unit vectors"):
        data.load_target(Item("000000"), "normal")
    # keypoint JSON saying another image size than the file
    kp = json.loads((root / "keypoints.json").read_text())
    kp["images"][1]["width"] = 99
    (root / "keypoints.json").write_text(json.dumps(kp))
    with pytest.raises(AnnotationError, match=r"field 'images\[id=1\].width/height'"):
        DenseData(root).load(Item("000001", 0), "pose", (32, 32))
    (root / "meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(AnnotationError, match="meta.json: field 'format'"):
        DenseData(root)


def test_exr_maps_read_like_npy(tmp_path):
    root = write_tiny_dataset(tmp_path / "d", n=1)
    n = np.load(root / "normals" / "000000.npy").astype(np.float32)
    write_exr(root / "normals" / "000000.exr", n)
    (root / "normals" / "000000.npy").unlink()
    assert np.allclose(read_dense(root / "normals" / "000000.exr", "normal"), n, atol=1e-6)
    tgt = DenseData(root).load_target(Item("000000"), "normal")
    assert np.allclose(tgt["normal"], n, atol=1e-6)


def test_missing_labels_mean_no_label(tmp_path):
    root = write_tiny_dataset(tmp_path / "d", n=3)
    (root / "albedo" / "000001.png").unlink()
    data = DenseData(root)
    assert [i.key for i in data.items("albedo")] == ["000000", "000002"]
    assert len(data.items("seg")) == 3 and len(data.items("pose")) == 3


def test_flip_and_crop_consistency(tmp_path):
    root = write_tiny_dataset(tmp_path / "d", n=1, h=40, w=32)
    data = DenseData(root)
    size = (48, 32)
    a = data.load(Item("000000", 0), "pose", size)
    b = data.load(Item("000000", 0), "pose", size, flip=True)
    assert np.array_equal(b["image"], a["image"][:, ::-1])
    fi = flip_index()
    lab = a["kpts"][:, 2] > 0
    assert np.allclose(b["kpts"][fi][lab, 0], size[1] - 1 - a["kpts"][lab, 0], atol=1e-4)
    # the crop maps the box centre to the crop centre
    p = data.people("000000")[0]
    cx, cy = p.bbox[0] + p.bbox[2] / 2, p.bbox[1] + p.bbox[3] / 2
    assert np.allclose(a["affine"] @ [cx, cy, 1], [size[1] / 2, size[0] / 2])
    s = data.load(Item("000000"), "seg", size)
    sf = data.load(Item("000000"), "seg", size, flip=True)
    assert (s["parts"] == 4).sum() == (sf["parts"] == 5).sum() > 0  # left arm becomes right arm
    n = data.load(Item("000000"), "normal", size)
    nf = data.load(Item("000000"), "normal", size, flip=True)
    assert np.allclose(nf["normal"][:, ::-1, 0], -n["normal"][..., 0])
    assert n["valid"].sum() == nf["valid"].sum() > 0


def test_heatmap_encode_decode_roundtrip():
    import torch
    k = torch.tensor([[[10.0, 20.0, 2], [30.5, 7.0, 2], [0, 0, 0]]])
    hm, w = gaussian_heatmaps(k, (16, 12), 4, 2.0)
    assert w.tolist() == [[1.0, 1.0, 0.0]]
    assert float(hm[0, 2].abs().max()) == 0.0
    xy, score = decode_heatmaps(hm[0].numpy(), 4)
    assert np.abs(xy[:2] - k[0, :2, :2].numpy()).max() <= 2.0  # quantised to a quarter cell (1 px)
    assert score[0] == pytest.approx(1.0, abs=0.2)
