"""The on-disk humans-dense-v1 format: files read back equal what was rendered, keypoints.json is valid
COCO (pycocotools), meta.json is written last, resuming regenerates only missing items byte for
byte, worker count does not change the bytes, and the CLI writes a preview contact sheet."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from humans.shared.synth import cli
from humans.shared.synth.render import generate
from humans.shared.synth.writer import LABELS, read_item, write_dataset
from humans.shared.humans.keypoints import KEYPOINT_NAMES, SKELETON
from humans.shared.humans.parts import PART_COLORS

SIZE = 128
N = 4


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "preview.png"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "DATA"
    res = write_dataset(out, N, SIZE, seed=3, workers=1, progress=False)
    assert res["generated"] == N
    return out


def test_round_trip(data):
    meta = json.loads((data / "meta.json").read_text())
    assert meta["format"] == "humans-dense-v1" and meta["count"] == N and meta["keypoints"] == 308
    assert meta["parts"] == 29 and meta["pointmap_frame"] == "camera, focal-normalised"
    for i in range(N):
        s = generate(3, i, SIZE)
        r = read_item(data, i)
        assert r["image"].shape == (SIZE, SIZE, 3)
        psnr = 10 * np.log10(255 ** 2 / np.mean((r["image"].astype(float) - s.image) ** 2))
        assert psnr > 24  # JPEG quality 92 on small, high-contrast synthetic images (measured 27-35 dB)
        assert r["parts_mode"] == "P" and np.array_equal(r["parts"], s.parts)
        assert r["mask_mode"] == "L" and np.array_equal(r["mask"], s.mask)
        assert r["normals"].dtype == np.float16 and np.abs(r["normals"] - s.normals).max() < 1e-3
        assert r["pointmap"].dtype == np.float32 and np.array_equal(r["pointmap"], s.pointmap)
        assert np.array_equal(r["albedo"], s.albedo)
        assert np.abs(r["keypoints"][:, :2] - s.keypoints[:, :2]).max() <= 0.005 + 1e-9
        assert np.array_equal(r["keypoints"][:, 2], s.keypoints[:, 2])
        assert r["record"]["annotation"]["bbox"] == s.bbox and r["record"]["image"]["light"] == s.record["light"]
    with Image.open(data / "parts" / "000000.png") as im:  # the palette is the shared one
        assert np.array_equal(np.array(im.getpalette()[: 29 * 3]).reshape(29, 3), PART_COLORS)


def test_keypoints_json_is_coco(data):
    from pycocotools.coco import COCO

    coco = COCO(str(data / "keypoints.json"))
    assert sorted(coco.getImgIds()) == list(range(N))
    cat = coco.loadCats(1)[0]
    assert cat["keypoints"] == KEYPOINT_NAMES and cat["skeleton"][0] == [SKELETON[0][0] + 1, SKELETON[0][1] + 1]
    for img_id in range(N):
        img = coco.loadImgs(img_id)[0]
        assert img["file_name"] == f"{img_id:06d}.jpg" and (data / "images" / img["file_name"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert len(anns) == 1 and len(anns[0]["keypoints"]) == 3 * 308
        mask = np.asarray(Image.open(data / "masks" / f"{img_id:06d}.png")) > 127
        assert anns[0]["area"] == mask.sum()


def test_resume_regenerates_only_missing_items(data, tmp_path):
    before = _digest(data)
    (data / "records" / "000002.json").unlink()
    (data / "pointmap" / "000002.npy").unlink()
    (data / "meta.json").unlink()
    res = write_dataset(data, N, SIZE, seed=3, workers=1, progress=False)
    assert res["generated"] == 1 and res["skipped"] == N - 1
    assert _digest(data) == before
    with pytest.raises(ValueError, match="seed"):
        write_dataset(data, N, SIZE, seed=4, workers=1, progress=False)
    # a folder that shared.synth did not write is never touched
    foreign = tmp_path / "real"
    (foreign / "images").mkdir(parents=True)
    (foreign / "images" / "000000.jpg").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="not written by shared.synth"):
        write_dataset(foreign, 1, SIZE, seed=3, workers=1, progress=False)
    assert sorted(p.name for p in foreign.rglob("*")) == ["000000.jpg", "images"]


def test_two_workers_write_the_same_bytes(data, tmp_path):
    out = tmp_path / "DATA2"
    res = write_dataset(out, N, SIZE, seed=3, workers=2, progress=False)
    assert res["generated"] == N
    assert _digest(out) == _digest(data)


def test_cli_subset_of_labels_and_preview(tmp_path, capsys):
    out = tmp_path / "D"
    assert cli.main(["--out", str(out), "--count", "2", "--size", "96x80", "--workers", "1",
                     "--labels", "keypoints,parts", "--preview", "--preview-count", "2", "--no-progress"]) == 0
    assert (out / "parts" / "000001.png").is_file() and not (out / "normals").exists()
    assert json.loads((out / "meta.json").read_text())["labels"] == ["images", "keypoints", "parts"]
    with Image.open(out / "images" / "000000.jpg") as im:
        assert im.size == (96, 80)
    sheet = np.asarray(Image.open(out / "preview.png"))
    assert sheet.shape[0] > 2 * 200 and sheet.shape[1] == 6 * 256 and sheet.std() > 10
    p = tmp_path / "sheet.png"
    assert cli.main(["--preview", "--preview-count", "1", "--size", "64", "--preview-path", str(p)]) == 0
    assert np.asarray(Image.open(p)).shape == (18 + 256, 6 * 256, 3)
    assert cli.main(["--out", str(tmp_path / "E"), "--labels", "normals,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert set(LABELS) == {"keypoints", "parts", "masks", "normals", "pointmap", "albedo"}


def test_register_adds_the_synth_subcommand():
    import argparse

    parser = argparse.ArgumentParser(prog="python -m heads")
    cli.register(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["synth", "--out", "X", "--count", "5", "--size", "64x48", "--seed", "2"])
    assert a.command == "synth" and a.func is cli.run
    assert (a.count, a.size, a.seed, a.threads >= 1) == (5, "64x48", 2, True)
