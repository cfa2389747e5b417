"""tools/head_oracle.py: the heads' decoder trained on tokens that hold the answer learns it (far past the mean
prediction and past the same decoder on each token's own pixels); bad arguments are refused by name."""
from __future__ import annotations

import json

import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    from humans.shared.synth.writer import write_dataset

    out = tmp_path_factory.mktemp("oracle_val") / "data"
    write_dataset(out, 12, 128, seed=7, workers=1, progress=False)
    return out


def _run(task, features, epochs, synth_data, held_out, tmp_path, *extra):
    from humans.tools.head_oracle import main

    out = tmp_path / f"{task}_{features}"
    assert main(["--task", task, "--features", features, "--data", str(synth_data), "--val-data", str(held_out),
                 "--out", str(out), "--size", "64x48", "--epochs", str(epochs), *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_normal_head_learns_from_truth_tokens_not_from_pixels_alone(synth_data, held_out, tmp_path):
    truth = _run("normal", "truth", 8, synth_data, held_out, tmp_path)
    pixels = _run("normal", "pixels", 8, synth_data, held_out, tmp_path)
    mean = truth["mean_baseline"]["mean_deg"]
    assert truth["oracle"] == "truth" and truth["val_samples"] == 12
    assert truth["metrics"]["mean_deg"] < mean - 8            # measured 26 deg against 41
    assert truth["metrics"]["mean_deg"] < pixels["metrics"]["mean_deg"] - 6   # pixels alone: 38
    assert truth["loss"]["last"] < truth["loss"]["first"]


def test_seg_head_on_truth_tokens_draws_part_edges(synth_data, held_out, tmp_path):
    truth = _run("seg", "truth", 30, synth_data, held_out, tmp_path, "--pictures", "2")
    assert truth["metrics"]["mIoU"] > 2.5 * truth["mean_baseline"]["mIoU"]   # measured 0.103 against 0.029
    assert truth["metrics"]["boundary_F1"] > 0.2                               # the mean has no edges: 0
    pictures = sorted((tmp_path / "seg_truth").glob("*_vs_truth.png"))        # the last two held-out images,
    assert [p.name for p in pictures] == ["000010_vs_truth.png", "000011_vs_truth.png"]
    with Image.open(pictures[0]) as im:                                         # prediction | truth at 128 px
        assert im.size == (256, 128)


def test_bad_arguments_name_the_allowed_values(synth_data, tmp_path, capsys):
    from humans.tools.head_oracle import main

    base = ["--data", str(synth_data), "--val-data", str(synth_data), "--out", str(tmp_path / "x")]
    assert main(["--task", "seg", "--features", "labels", *base]) == 2
    assert "--features 'labels': allowed truth, pixels" in capsys.readouterr().err
    assert main(["--task", "pose", "--features", "truth", *base]) == 2
    assert "allowed seg, pointmap, normal, albedo" in capsys.readouterr().err
    assert main(["--task", "seg", "--features", "pixels", "--size", "60x48", *base]) == 2
    assert "multiple of --patch 8" in capsys.readouterr().err
