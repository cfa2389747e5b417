"""Heads on a device (``--device cpu|cuda|auto``), features streamed from the on-disk cache, and the
logs of a training run (TensorBoard event files read back with tensorboard's reader, loss plot)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import humans.heads.data.features as features_mod
from humans.heads.cli import main, resolve_device
from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData
from humans.heads.data.features import FeatureCache, FeatureExtractor, to_tensor
from humans.heads.prepare import _MEMORY, feature_key, prepare_task
from humans.shared.backbone import load_backbone

ARGS = ["--task", "seg", "--size", "64", "--layers", "-1", "--epochs", "3", "--lr", "3e-3", "--channels", "8",
        "--batch-size", "8", "--label-stride", "4", "--val-frac", "0.25"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_device_cpu_and_auto_train_the_same_head_and_write_logs(synth_data, random_tiny_backbone, tmp_path, capsys):
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    runs = {}
    for device in ("cpu", "auto"):
        out = tmp_path / device
        assert main(["train", *ARGS, "--backbone", str(random_tiny_backbone), "--data", str(synth_data),
                     "--out", str(out), "--device", device]) == 0
        runs[device] = out
    if resolve_device("auto") == "cpu":   # the same device: the same weights and metrics
        a, b = (load_file(str(runs[d] / "head.safetensors")) for d in ("cpu", "auto"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert (json.loads((runs["cpu"] / "metrics.json").read_text())["metrics"]
                == json.loads((runs["auto"] / "metrics.json").read_text())["metrics"])

    # TensorBoard events read back with tensorboard's own reader: one loss and lr point per epoch
    out = runs["cpu"]
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"heads/seg/train_loss", "heads/seg/lr", "heads/seg/val_mIoU"} <= set(tags)
    losses = [e.value for e in acc.Scalars("heads/seg/train_loss")]
    history = json.loads((out / "history.json").read_text())["loss"]
    assert [e.step for e in acc.Scalars("heads/seg/train_loss")] == [1, 2, 3]
    assert np.allclose(losses, history, rtol=1e-6)
    miou = json.loads((out / "metrics.json").read_text())["metrics"]["mIoU"]
    assert math.isclose(acc.Scalars("heads/seg/val_mIoU")[0].value, miou, rel_tol=1e-6)
    with Image.open(out / "plots" / "loss.png") as im:
        assert im.format == "PNG" and im.size[0] > 300

    # eval and predict on the chosen device
    assert main(["eval", "--checkpoint", str(out / "head.safetensors"), "--data", str(synth_data),
                 "--split", "val", "--device", "auto"]) == 0
    img = sorted((synth_data / "images").iterdir())[0]
    assert main(["predict", "--checkpoint", str(out / "head.safetensors"), "--out", str(tmp_path / "pred"),
                 "--device", "cpu", str(img)]) == 0
    assert (tmp_path / "pred" / f"{img.stem}_seg.npy").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "eval", "probe", "predict"])
def test_device_cuda_without_gpu_is_a_clear_error(command, synth_data, random_tiny_backbone, tmp_path, capsys):
    argv = {"train": ["train", *ARGS, "--backbone", str(random_tiny_backbone), "--data", str(synth_data),
                      "--out", str(tmp_path / "r")],
            "eval": ["eval", "--checkpoint", str(tmp_path / "none.safetensors"), "--data", str(synth_data)],
            "probe": ["probe", "--backbone", str(random_tiny_backbone), "--data", str(synth_data)],
            "predict": ["predict", "--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path),
                        "x.png"]}[command]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA device is available" in err and "auto, cpu" in err
    with pytest.raises(SystemExit):
        main([*argv, "--device", "tpu"])


def test_features_are_written_in_batches_and_read_from_disk(synth_data, random_tiny_backbone, tmp_path, monkeypatch):
    data = DenseData(synth_data)
    cfg = HeadConfig(task="seg", backbone=str(random_tiny_backbone), layers=[-1], size=(64, 64), label_stride=4)
    items = data.items("seg", data.keys)[:11]
    backbone = load_backbone(random_tiny_backbone)
    ex = FeatureExtractor(backbone, cfg.layers, cfg.pixel_mean, cfg.pixel_std)
    writes = []
    real_write = features_mod.FeatureWriter.write
    monkeypatch.setattr(features_mod.FeatureWriter, "write", lambda self, f: (writes.append(len(f)), real_write(self, f)))
    cache = FeatureCache(tmp_path / "cache")
    _MEMORY.clear()
    tt = prepare_task(data, items, cfg, ex, cache, batch_size=4, device=resolve_device("auto"))
    assert writes == [4, 4, 3]                           # one write per batch, never the whole set
    path = cache.path(feature_key(cfg, items, "seg", False, data))
    on_disk = np.load(path, mmap_mode="r")
    assert isinstance(on_disk, np.memmap) and on_disk.shape == tuple(tt.feats.shape) and on_disk.dtype == np.float16
    assert not list(path.parent.glob("*.tmp*"))
    # rows read back through the memory map equal a direct forward of those images
    with torch.no_grad():
        direct = ex(to_tensor([data.load(it, "seg", (64, 64))["image"] for it in items[5:7]])).half()
    assert torch.equal(tt.feats[5:7], direct)
    # a second run reads the cache instead of the backbone
    _MEMORY.clear()
    writes.clear()
    again = prepare_task(data, items, cfg, None, FeatureCache(tmp_path / "cache"))
    assert writes == [] and torch.equal(again.feats, tt.feats)
    _MEMORY.clear()


def test_feature_cache_tells_apart_folders_whose_images_share_names(synth_data, random_tiny_backbone, tmp_path):
    """A training and a held-out set rendered apart both number their images from 000000: the cache key names
    the files, so the second folder's features are its own, not the first's read back (they were, before)."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(synth_data, other)
    data, twin = DenseData(synth_data), DenseData(other)
    items = data.items("seg", data.keys)[:4]
    assert [i.key for i in twin.items("seg", twin.keys)[:4]] == [i.key for i in items]
    for it in items:   # same names, other pictures
        path = twin.image_path(it.key)
        Image.fromarray(255 - np.asarray(Image.open(path).convert("RGB"))).save(path)
    cfg = HeadConfig(task="seg", backbone=str(random_tiny_backbone), layers=[-1], size=(64, 64), label_stride=4)
    ex = FeatureExtractor(load_backbone(random_tiny_backbone), cfg.layers, cfg.pixel_mean, cfg.pixel_std)
    cache = FeatureCache(tmp_path / "cache")
    _MEMORY.clear()
    first = prepare_task(data, items, cfg, ex, cache)
    second = prepare_task(twin, items, cfg, ex, cache)
    with torch.no_grad():
        direct = ex(to_tensor([twin.load(it, "seg", (64, 64))["image"] for it in items])).half()
    assert torch.equal(second.feats, direct) and not torch.equal(second.feats, first.feats)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    _MEMORY.clear()


def test_max_images_trains_on_the_first_images_only(synth_data, random_tiny_backbone, tmp_path, capsys):
    """``--max-images N``: the head trains on the first N images (by name) of its training split, is scored on
    the same held-out images; below 1 is refused by name."""
    out = tmp_path / "few"
    assert main(["train", *ARGS, "--epochs", "1", "--backbone", str(random_tiny_backbone), "--data", str(synth_data),
                 "--out", str(out), "--device", "cpu", "--max-images", "7"]) == 0
    rec = json.loads((out / "metrics.json").read_text())
    assert (rec["train_samples"], rec["val_samples"]) == (7, 10)
    assert main(["train", *ARGS, "--backbone", str(random_tiny_backbone), "--data", str(synth_data),
                 "--out", str(tmp_path / "none"), "--max-images", "0"]) == 2
    assert "--max-images 0: allowed >= 1" in capsys.readouterr().err
