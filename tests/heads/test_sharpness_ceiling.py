"""tools/sharpness_ceiling.py on labelled synthetic humans: the truth scores perfectly at stride 1 and every
sharpness figure falls as the output cells grow."""
from __future__ import annotations

import json

import numpy as np
import pytest


def test_ceiling_falls_with_the_output_stride(synth_data, tmp_path):
    from humans.tools.sharpness_ceiling import main

    out = tmp_path / "ceiling.json"
    assert main(["--data", str(synth_data), "--strides", "1,4,16", "--json", str(out)]) == 0
    rows = {r["stride"]: r for r in json.loads(out.read_text())}
    assert rows[1]["seg_mIoU"] == 1.0 and rows[1]["seg_boundary_F1"] == 1.0
    assert rows[1]["normal_mean_deg"] < 0.01 and rows[1]["normal_grad_ratio"] == pytest.approx(1.0)
    for key in ("seg_mIoU", "seg_boundary_F1", "normal_grad_ratio"):
        assert rows[1][key] > rows[4][key] > rows[16][key], key
    assert 0 < rows[4]["normal_mean_deg"] < rows[16]["normal_mean_deg"] < 60


def test_cell_average_of_a_flat_map_is_unchanged():
    from humans.tools.sharpness_ceiling import normal_at_stride, seg_at_stride

    parts = np.full((32, 24), 3, np.uint8)
    assert (seg_at_stride(parts, 8) == 3).all()
    normals = np.zeros((32, 24, 3), np.float32)
    normals[..., 2] = -1
    assert np.allclose(normal_at_stride(normals, np.ones((32, 24), bool), 8), normals, atol=1e-6)


def test_bad_strides_are_refused(capsys):
    from humans.tools.sharpness_ceiling import main

    with pytest.raises(SystemExit):
        main(["--data", ".", "--strides", "0,4"])
    assert "allowed comma-separated positive integers" in capsys.readouterr().err
