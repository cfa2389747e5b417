"""tools/heads_figure.py: image | truth | one column per head, on labelled synthetic humans (heads here are
untrained, on a random-init tiny backbone: the test checks the drawing, not the predictions)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from humans.heads.config import HeadConfig
from humans.heads.data.dataset import DenseData
from humans.heads.models.model import load_backbone_for, make_head, save_head
from humans.heads.tasks import get_task


def untrained_head(task: str, backbone_path, out) -> str:
    cfg = HeadConfig(task=task, backbone=str(backbone_path), size=(64, 48), channels=16)
    return str(save_head(out, make_head(cfg, load_backbone_for(cfg)), cfg))


def test_figure_has_a_column_per_head_and_shows_scored_pixels_only(synth_data, random_tiny_backbone, tmp_path):
    from humans.tools.heads_figure import PANEL_WIDTH, main, panels, primary_metric

    seg_a = untrained_head("seg", random_tiny_backbone, tmp_path / "a" / "head.safetensors")
    seg_b = untrained_head("seg", random_tiny_backbone, tmp_path / "b" / "head.safetensors")
    (tmp_path / "b" / "metrics.json").write_text(json.dumps({"metrics": {"mIoU": 0.1234}}))
    assert primary_metric(tmp_path / "b" / "head.safetensors", "seg") == "\nmIoU 0.123"
    assert primary_metric(tmp_path / "a" / "head.safetensors", "seg") == ""
    (tmp_path / "b" / "eval256.json").write_text(json.dumps({"metrics": {"mIoU": 0.5}}))   # an eval's --out
    assert primary_metric(tmp_path / "b" / "head.safetensors", "seg", "eval256.json") == "\nmIoU 0.500"
    data = DenseData(synth_data)
    images = [data.image_path(k) for k in data.keys[:2]]
    out = tmp_path / "fig.png"
    assert main(["--task", "seg", "--truth", str(synth_data), "--images", *map(str, images),
                 "--head", f"a={seg_a}", "--head", f"b={seg_b}", "--out", str(out)]) == 0
    w, h = Image.open(out).size
    assert (w, h) == (4 * PANEL_WIDTH, 2 * PANEL_WIDTH + 60)        # image, truth, a, b; two rows + titles

    # normals are labelled on the person only: off it, a head's panel shows the truth's drawing
    untrained_head("normal", random_tiny_backbone, tmp_path / "n" / "head.safetensors")
    titles, rows = panels("normal", synth_data, images[:1], [("n", tmp_path / "n" / "head.safetensors")])
    assert titles == ["image", "ground truth", "n"]
    _, valid = get_task("normal").truth_and_valid(data, images[0].stem)
    assert 0 < valid.mean() < 1
    truth_panel, head_panel = rows[0][1], rows[0][2]
    assert np.array_equal(truth_panel[~valid], head_panel[~valid])
    assert not np.array_equal(truth_panel[valid], head_panel[valid])

    # --ceiling: the truth per 8-px cell after the truth, coarser than it but the same on flat regions
    titles, rows = panels("normal", synth_data, images[:1], [("n", tmp_path / "n" / "head.safetensors")], ceiling=8)
    assert titles[2].startswith("truth per 8-px cell") and len(rows[0]) == 4
    assert np.array_equal(rows[0][2][~valid], truth_panel[~valid])
    assert 0 < np.abs(rows[0][2][valid].astype(int) - truth_panel[valid]).mean() < 40
    assert main(["--task", "seg", "--truth", str(synth_data), "--images", str(images[0]), "--head", f"a={seg_a}",
                 "--ceiling", "8", "--out", str(out)]) == 0
    assert Image.open(out).size[0] == 4 * PANEL_WIDTH
    with pytest.raises(SystemExit):
        main(["--task", "albedo", "--truth", str(synth_data), "--images", str(images[0]), "--head", f"a={seg_a}",
              "--ceiling", "8", "--out", str(out)])

    with pytest.raises(ValueError, match="is a normal head, not seg"):
        panels("seg", synth_data, images[:1], [("n", tmp_path / "n" / "head.safetensors")])
    with pytest.raises(SystemExit):
        main(["--task", "seg", "--truth", str(synth_data), "--images", str(images[0]), "--head", "nolabel",
              "--out", str(out)])
