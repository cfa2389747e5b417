"""Runs at the extremes: a stage that rejected everything (no shards at all) and a run that rejected
nothing; plus a shard-only directory (no stages/, no index.parquet)."""
from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

from humans.curation.report.build import build_report
from humans.curation.report.verify import verify_run


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src"))


def test_stage_rejected_everything(run_factory, tmp_path):
    plan = [("00_read", "corrupt")] + [("02_quality", "blurry")] * 5
    run = run_factory(tmp_path, plan)
    doc = build_report(run, tmp_path / "report")
    f = {s["stage"]: s for s in doc["funnel"]}
    assert f["00_read"] == {**f["00_read"], "in": 6, "kept": 5, "rejected": 1}
    assert f["02_quality"]["in"] == 5 and f["02_quality"]["kept"] == 0
    assert f["02_quality"]["reasons"] == {"blurry": 5}
    for later in ("03_person", "04_framing", "05_phash", "06_embedding"):
        assert f[later]["in"] == 0 and f[later]["kept"] == 0 and f[later]["reasons"] == {}
    assert doc["totals"]["kept"] == 0 and doc["totals"]["shards"] == 0 and doc["totals"]["keep_rate"] == 0
    assert doc["shards"] == [] and doc["duplicates"] == {}
    # columns of stages nobody reached are named as not recorded, not plotted
    assert "03_person.n_persons" in doc["missing_columns"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert "No shards: nothing was kept." in page
    assert "no shards on disk: nothing kept to show" in page
    assert "03_person.n_persons" in page
    assert json.loads((tmp_path / "report" / "stats.json").read_text())["totals"]["kept"] == 0
    problems, summary = verify_run(run)
    assert problems == [] and summary["samples"] == 0


def test_nothing_rejected_with_asset_files(run_factory, tmp_path):
    run = run_factory(tmp_path, [(None, None)] * 6, samples_per_shard=4)
    out = tmp_path / "report"
    doc = build_report(run, out, inline=False)
    assert all(s["rejected"] == 0 and s["in"] == 6 and s["reasons"] == {} for s in doc["funnel"])
    assert doc["totals"]["entered"] == doc["totals"]["kept"] == 6 and doc["totals"]["keep_rate"] == 1.0
    assert [s["samples"] for s in doc["shards"]] == [4, 2]
    page = (out / "index.html").read_text()
    assert "No stage rejected anything." in page and "No duplicate clusters found." in page
    p = _Imgs()
    p.feed(page)
    assert p.srcs and all(s.startswith("assets/") and (out / s).is_file() for s in p.srcs)
    assert page.count('class="tile kept"') == 6
    assert verify_run(run)[0] == []


def test_shard_only_directory(small_run, tmp_path):
    """No stages/ and no index.parquet: the per-shard table comes from the shards' json metadata."""
    d = tmp_path / "shards"
    d.mkdir()
    for p in [*small_run.glob("*.tar"), small_run / "manifest.json"]:
        shutil.copy(p, d)
    doc = build_report(d, tmp_path / "report", per_shard=1)
    assert doc["funnel"] == [] and doc["totals"]["kept"] == 20
    assert [s["samples"] for s in doc["shards"]] == [8, 8, 4]
    assert any("no index.parquet" in n for n in doc["notes"])
    assert any("no stages/" in n for n in doc["notes"])
    assert "index.width" in doc["distributions"]
    problems, _ = verify_run(d)
    assert problems == []
