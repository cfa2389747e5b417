"""tools/pointmap_diagnosis.py on labelled synthetic humans: its oracles order as their knowledge does."""
from __future__ import annotations

import json


def test_oracles_rank_by_what_they_know(synth_data, tmp_path):
    from humans.tools.pointmap_diagnosis import main

    out = tmp_path / "diag.json"
    assert main(["--data", str(synth_data), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    e = res["si_error"]
    assert e["truth"] < 1e-9                                  # the metric of the target itself
    assert e["truth at token resolution (8 px)"] < e["flat, true rays (camera known, no relief)"]
    # the image's own rays (its camera) beat every prediction that has to guess them
    assert e["flat, true rays (camera known, no relief)"] < e["flat, mean rays"]
    assert e["flat, true rays (camera known, no relief)"] < e["mean shape (the baseline's construction)"]
    assert 0 < res["relief_std_over_depth_median"] < 0.5     # people have depth, far less than their distance
