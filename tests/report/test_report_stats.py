"""stats.json and index.html of a real pipeline run (``curated_run_dir``) equal what independent
readers (tarfile, pandas) find in its shards and decision parquets."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from report_helpers import duplicate_clusters, funnel_counts, shard_counts, stage_frames

from humans.curation.report.cli import main as report_main


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src"))
        self.scripts += tag == "script"


@pytest.fixture(scope="module")
def report(curated_run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rc = report_main(["report", str(curated_run_dir), "--out", str(out), "--per-shard", "4", "--examples", "2",
                      "--clusters", "3"])
    assert rc == 0
    return curated_run_dir, out, json.loads((out / "stats.json").read_text())


def test_stats_equal_independent_counts(report):
    run, out, stats = report
    shards = shard_counts(run)
    funnel = funnel_counts(run)
    assert shards and funnel, "fixture must have shards and stages"

    # totals: entered = rows of the first stage; kept = samples in the tars; bytes = file sizes
    assert stats["totals"]["entered"] == funnel["00_read"]["in"]
    assert stats["totals"]["kept"] == sum(s["samples"] for s in shards.values())
    assert stats["totals"]["shards"] == len(shards)
    assert stats["totals"]["shard_bytes"] == sum(s["tar_bytes"] for s in shards.values())
    assert stats["totals"]["image_bytes"] == sum(s["image_bytes"] for s in shards.values())

    # per-shard table
    table = {s["name"]: s for s in stats["shards"]}
    assert set(table) == set(shards)
    for name, s in shards.items():
        assert table[name]["samples"] == s["samples"]
        assert table[name]["image_bytes"] == s["image_bytes"]
        assert table[name]["tar_bytes"] == s["tar_bytes"]
        assert table[name]["mean_width"] == pytest.approx(s["mean_width"])
        assert table[name]["mean_height"] == pytest.approx(s["mean_height"])

    # funnel: every stage's in / kept / rejections by reason
    got = {f["stage"]: f for f in stats["funnel"]}
    assert list(got) == sorted(funnel)
    for stage, f in funnel.items():
        assert got[stage]["in"] == f["in"], stage
        assert got[stage]["kept"] == f["kept"], stage
        assert got[stage]["rejected"] == f["in"] - f["kept"], stage
        assert got[stage]["reasons"] == f["reasons"], stage
    # the last stage keeps exactly what the shards hold
    assert funnel[max(funnel)]["kept"] == stats["totals"]["kept"]
    assert stats["totals"]["kept"] == len(pd.read_parquet(run / "index.parquet"))

    # distributions count every value once: index histograms cover every kept sample,
    # stage histograms split kept / rejected exactly like the decisions
    h = stats["distributions"]["index.width"]
    assert sum(h["counts"]) == stats["totals"]["kept"]
    idx = pd.read_parquet(run / "index.parquet")
    assert h["mean"] == pytest.approx(idx["width"].mean())
    frames = stage_frames(run)
    for name, hist in stats["distributions"].items():
        stage, _, col = name.partition(".")
        if stage == "index":
            continue
        df = frames[stage]
        vals = df[col].notna()
        assert sum(hist["kept_counts"]) == int((vals & df["kept"]).sum()), name
        assert sum(hist["rejected_counts"]) == int((vals & ~df["kept"]).sum()), name
        if not vals.any():  # e.g. framing.cut_landmarks with a detector that gives no landmarks
            assert hist["min"] is None and hist["max"] is None, name
            continue
        assert hist["min"] == pytest.approx(float(df[col].min())), name
        assert hist["max"] == pytest.approx(float(df[col].max())), name
        assert hist["mean"] == pytest.approx(float(df[col].mean())), name

    # duplicate clusters: number of clusters with > 1 member per dedup stage
    assert stats["duplicates"], "the demo pool has duplicates"
    for stage, d in stats["duplicates"].items():
        assert d["clusters_with_duplicates"] == duplicate_clusters(frames[stage]), stage


def test_page_is_self_contained_and_complete(report):
    run, out, stats = report
    page = (out / "index.html").read_text()
    p = _Imgs()
    p.feed(page)
    assert p.scripts == 0
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert p.srcs and all(s.startswith("data:image/") for s in p.srcs)
    for f in stats["funnel"]:
        assert f">{f['stage']}<" in page
        for reason in f["reasons"]:
            assert reason in page
    for s in stats["shards"]:
        assert s["name"] in page
    # one thumbnail per kept image shown (4 per shard asked) and a box of examples per reason
    kept_tiles = page.count('class="tile kept"')
    assert kept_tiles == sum(min(4, s["samples"]) for s in stats["shards"])
    # pool sources that are readable images are shown; undecodable ones say why
    assert "no preview: " in page  # the demo pool's corrupt / truncated / empty files
    n_reasons = sum(len(f["reasons"]) for f in stats["funnel"])
    assert page.count("<h4>") >= len(stats["shards"]) + n_reasons
    assert stats["report"]["images"] == len(p.srcs)


def test_report_cli_errors_clearly(tmp_path, capsys):
    assert report_main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "not a curated run" in capsys.readouterr().err
    assert not Path(tmp_path / "r" / "index.html").exists()


def test_screenshot_tool_dom_check(tmp_path):
    """tools/screenshot_report.py's DOM check (run on Chromium's --dump-dom) flags what it must."""
    import base64
    import importlib.util
    import io

    from PIL import Image
    spec = importlib.util.spec_from_file_location("screenshot_report",
                                                  Path(__file__).parents[2] / "tools" / "screenshot_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    good = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "a.png").write_bytes(buf.getvalue())
    problems, n = mod.check_dom(f'<html><img src="{good}"><img src="assets/a.png"></html>', tmp_path)
    assert problems == [] and n == 2
    bad = ('<html><img src="assets/missing.png"><img src="data:image/png;base64,AAAA">'
           '<img src="https://example.com/x.png"><script>x()</script></html>')
    problems, n = mod.check_dom(bad, tmp_path)
    assert n == 3 and len(problems) == 5, problems
    assert any("missing file assets/missing.png" in p for p in problems)
    assert any("does not decode" in p for p in problems)
    assert any("<script>" in p for p in problems)
