"""The real pipeline on local Ray over the demo pool: shards read back with webdataset and tarfile,
index and manifest consistent, every stage's decisions written, bad inputs counted by reason, odd
modes converted and kept, and every stage scored against the pool's labels."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pandas as pd
from PIL import Image

from humans.curation.config import STAGE_DIRS, load_pipeline
from humans.curation.detectors import resolve_kind
from humans.curation.decisions import read_decisions
from humans.curation.scoring import format_table, score_run
from humans.shared.schema import DECISION_COLUMNS, INDEX_COLUMNS, SampleMeta
from humans.shared.shards import file_sha256, iter_tar_samples, keys_digest, list_shards, read_manifest, tar_member_names

DEFAULT_DETECTOR = resolve_kind(load_pipeline("humans-test").stage("person"))  # mediapipe only with the extra


def test_shards_read_back_with_webdataset_and_tarfile(curated_run_dir):
    run = curated_run_dir
    manifest = read_manifest(run)
    index = pd.read_parquet(run / "index.parquet")
    assert tuple(index.columns) == INDEX_COLUMNS
    assert index["key"].is_unique and len(index) == manifest["total_samples"] > 20
    shards = list_shards(run)
    assert [s.name for s in shards] == [e["name"] for e in manifest["shards"]]
    assert not list(run.glob("*.tmp"))
    seen = []
    for entry, path in zip(manifest["shards"], shards):
        assert file_sha256(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
        samples = list(iter_tar_samples(path))  # the webdataset library
        keys = [s["__key__"] for s in samples]
        assert len(keys) == entry["samples"] and keys_digest(keys) == entry["keys_sha256"]
        names = tar_member_names(path)  # the standard tarfile module
        assert len(names) == 2 * len(keys)
        with tarfile.open(path) as tf:
            for s in samples:
                meta = SampleMeta.model_validate_json(s["json"])
                img_bytes = s[meta.image_ext]
                assert tf.extractfile(f"{meta.key}.{meta.image_ext}").read() == img_bytes
                row = index.set_index("key").loc[meta.key]
                assert row["shard"] == path.name and row["image_sha256"] == meta.image_sha256
                im = Image.open(io.BytesIO(img_bytes))
                assert im.size == (meta.width, meta.height) and im.mode in ("RGB", "L")
                assert meta.persons and row["n_persons"] == len(meta.persons) >= 1
                assert "RANDOM INIT" in meta.model_extra["embedding_model"]
                assert meta.model_extra["detector"].startswith(DEFAULT_DETECTOR)
        seen += keys
    assert sorted(seen) == sorted(index["key"])


def test_original_bytes_are_kept_unless_converted(curated_run_dir, demo_pool_dir):
    labels = pd.read_parquet(demo_pool_dir / "labels.parquet").set_index("key")
    index = pd.read_parquet(curated_run_dir / "index.parquet").set_index("key")
    originals = [k for k in index.index if labels.loc[k, "category"] == "person"]
    assert len(originals) > 20
    for k in originals:
        data = (demo_pool_dir / labels.loc[k, "file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == index.loc[k, "image_sha256"], k


def test_every_stage_writes_decisions_and_bad_inputs_are_counted(curated_run_dir, demo_pool_dir):
    labels = pd.read_parquet(demo_pool_dir / "labels.parquet")
    for stage, dirname in STAGE_DIRS.items():
        files = list((curated_run_dir / "stages" / dirname).glob("*.parquet"))
        assert files, dirname
        df = read_decisions(curated_run_dir, stage)
        assert set(DECISION_COLUMNS) <= set(df.columns) and len(df) > 0
        assert (df["reason"] == "").equals(df["kept"].astype(bool)), stage
    read = read_decisions(curated_run_dir, "read").merge(labels, on="key")
    assert len(read) == len(labels)  # every pool item is accounted for
    bad = read[~read["kept"]].set_index("key")
    expect = {"corrupt": {"corrupt", "truncated"}, "truncated_file": {"truncated"}, "empty_file": {"empty"},
              "decompression_bomb": {"decompression_bomb"}}
    for cat, reasons in expect.items():
        keys = labels.loc[labels["category"] == cat, "key"]
        assert len(keys) and all(bad.loc[k, "reason"] in reasons for k in keys), cat
    run = json.loads((curated_run_dir / "run.json").read_text())
    assert run["stages"]["00_read"]["in"] == len(labels)
    assert sum(run["stages"]["00_read"]["rejected"].values()) == len(bad)
    assert "RANDOM INIT" in run["embedding"]["model"] and run["embedding"]["index"] == "flat"


def test_odd_modes_pass_and_are_stored_as_rgb(curated_run_dir, demo_pool_dir):
    labels = pd.read_parquet(demo_pool_dir / "labels.parquet")
    read = read_decisions(curated_run_dir, "read").set_index("key")
    odd = labels[labels["category"].isin(["cmyk", "sixteen_bit", "palette", "exif_rotated"])]
    assert len(odd) >= 8
    assert read.loc[odd["key"], "kept"].all()  # all decode fine
    res = read_decisions(curated_run_dir, "resolution").set_index("key")
    assert set(res.loc[odd["key"], "mode"]) >= {"CMYK", "P"}
    index = pd.read_parquet(curated_run_dir / "index.parquet").set_index("key")
    kept_odd = [k for k in odd["key"] if k in index.index]
    assert len(kept_odd) >= 4
    for shard in list_shards(curated_run_dir):
        for s in iter_tar_samples(shard):
            if s["__key__"] in kept_odd:
                meta = json.loads(s["json"])
                im = Image.open(io.BytesIO(s[meta["image_ext"]]))
                assert im.mode == "RGB" and meta["converted_from"]
                # EXIF rotation is baked in: the stored pixels are upright with the header's size
                assert im.size == (res.loc[s["__key__"], "width"], res.loc[s["__key__"], "height"])
                assert (im.getexif().get(0x0112) or 1) == 1


# Floors for each stage's precision (P) and recall (R) on the small demo pool (seed 0), set below
# what was measured (in brackets: the last run, and the earlier pool version where it differed) with
# a margin, because the pool generator and the detector's borderline calls may shift an item or two;
# scores.json records the numbers of every run.
FLOORS = {
    "decode": (1.0, 1.0),       # [1.00, 1.00] header/decoder checks are exact
    "resolution": (1.0, 1.0),   # [1.00, 1.00] header sizes are exact
    "quality": (0.9, 0.9),      # [1.00, 1.00]
    "person": (0.6, 0.9),       # [0.89 (0.73), 1.00] P: MediaPipe misses some small people (labelled
                                # for framing) and, on the earlier pool, two grey 16-bit people
    "framing": (0.75, None),    # [1.00, 0.75 (0.50)] R counts the small people the detector never
                                # saw (gone at the person stage); recall over reached items below
    "phash": (0.9, 0.9),        # [1.00, 1.00]
    "embedding": (0.5, 0.75),   # [0.80, 1.00] four labelled near duplicates beyond pHash reach (a crop, a
                                # re-framed, a letterboxed and a rotated copy); random-init embedder, 22
                                # whitened dims: the trained embedder's figures are in RESULTS.md
}


# Framing's truncation rule reads body landmarks; the default install's OpenCV detector gives boxes only,
# so the side-cut people pass framing there (measured: mediapipe 0.75, opencv 0.25 = 1 of 4 reached;
# with opencv the person stage measured P 0.76, R 1.00 and the kept set P 0.93, R 0.98).
FRAMING_RECALL_REACHED = {"mediapipe": 0.75, "opencv": 0.2}


def test_each_stage_is_scored_against_the_labels(curated_run_dir, demo_pool_dir, tmp_path):
    scores = score_run(curated_run_dir, demo_pool_dir, json_path=tmp_path / "scores.json")
    table = format_table(scores)
    print(table)
    assert json.loads((tmp_path / "scores.json").read_text())["stages"].keys() == scores["stages"].keys()
    for stage, (p_floor, r_floor) in FLOORS.items():
        s = scores["stages"][stage]
        assert s["precision"] is not None and s["precision"] >= p_floor, (stage, s)
        if r_floor is not None:
            assert s["recall"] >= r_floor, (stage, s)
    assert scores["stages"]["framing"]["recall_reached"] >= FRAMING_RECALL_REACHED[DEFAULT_DETECTOR]
    assert scores["kept"]["precision"] >= 0.9 and scores["kept"]["recall"] >= 0.8  # [1.00, 1.00 (0.90)]


def test_the_run_records_its_start_up_apart_from_its_work(curated_run_dir):
    run = json.loads((curated_run_dir / "run.json").read_text())
    startup, seconds = run["startup_seconds"], run["seconds"]
    assert set(startup) == {"stages_0_4", "embedding"}  # both phases ran >= 3 tasks
    for phase, step in (("stages_0_4", "stages_0_4"), ("embedding", "embedding")):
        assert 0.0 <= startup[phase] < seconds[step]


def test_the_plan_records_the_detector_every_node_ran(curated_run_dir):
    """``auto`` is resolved on the driver: the plan names the detector, and every decision row was made by it."""
    plan = json.loads((curated_run_dir / "work" / "plan.json").read_text())
    person = next(st for st in plan["config"]["stages"] if st["name"] == "person")
    assert person["detector"] == DEFAULT_DETECTOR != "auto"
    names = set(read_decisions(curated_run_dir, "person")["detector"])
    assert names and all(n.startswith(DEFAULT_DETECTOR) for n in names)
