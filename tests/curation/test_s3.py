"""Object storage end to end: the demo pool is uploaded to a real S3-compatible server (moto's server
mode, started here on loopback), curated with ``--input s3://... --out s3://...`` and the shards are
read back with the ``webdataset`` library through the same ``s3://`` URIs. The index covers every
kept image exactly once with the pool's bytes, no partial object is ever left under the output
prefix, nothing is written to the local disk, and a rerun resumes from the objects."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from humans.curation.decisions import read_decisions
from humans.shared import storage

CONFIG = str(Path(__file__).with_name("cheap_pipelines.yaml"))  # cheap stages: the test is about storage


@pytest.fixture
def s3(monkeypatch):
    pytest.importorskip("moto.server", reason="moto[server] (test extra) provides the S3 server")
    from s3_testlib import moto_s3  # beside this file

    with moto_s3() as (bucket, env):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield bucket


def upload(local_dir, uri: str) -> int:
    n = 0
    for dirpath, _, files in os.walk(local_dir):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
            with open(path, "rb") as fh:
                storage.write_bytes(storage.join(uri, rel), fh.read())
            n += 1
    return n


def test_pool_on_s3_curated_to_s3_and_read_back_with_webdataset(s3, demo_pool_dir, ray_local, tmp_path,
                                                                monkeypatch, capsys):
    import webdataset as wds

    from humans.curation.cli import main

    monkeypatch.chdir(tmp_path)  # nothing may land on the local disk (e.g. a folder named "s3:")
    pool, out = f"{s3}/pool", f"{s3}/runs/out"
    assert upload(demo_pool_dir, pool) > 100
    cmd = ["run", "--config", CONFIG, "--pipeline", "cheap", "--input", pool, "--out", out]
    assert main(cmd) == 0
    assert os.listdir(tmp_path) == []

    objects = dict(storage.list_files(out, recursive=True))
    assert not [k for k in objects if storage.basename(k).split(".")[-1].startswith("tmp")]  # no partial object
    manifest = storage.read_json(storage.join(out, "manifest.json"))
    index = storage.read_parquet(storage.join(out, "index.parquet")).to_pandas()
    assert [e["name"] for e in manifest["shards"]] == sorted(k for k in objects if k.endswith(".tar"))
    for e in manifest["shards"]:
        assert objects[e["name"]] == e["bytes"]
        assert hashlib.sha256(storage.read_bytes(storage.join(out, e["name"]))).hexdigest() == e["sha256"]

    storage.register_webdataset()  # webdataset opens s3:// through the same layer
    n = len(manifest["shards"])
    urls = f"{out}/humans-{{000000..{n - 1:06d}}}.tar"
    keys, shas = [], {}
    for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        meta = json.loads(s["json"])
        keys.append(s["__key__"])
        shas[s["__key__"]] = hashlib.sha256(s[meta["image_ext"]]).hexdigest()
        assert meta["source"].startswith(pool + "/")
    assert len(keys) == len(set(keys)) == len(index) == manifest["total_samples"] > 20  # each kept image once
    assert shas == dict(zip(index["key"], index["image_sha256"]))
    run = storage.read_json(storage.join(out, "run.json"))
    assert run["samples"] == len(index) and run["stages"]["00_read"]["in"] > 100

    # the index holds exactly the images every stage kept (decisions read back from s3), with the
    # bytes of the pool's files (the demo pool stores originals: nothing here needs conversion)
    kept = set(read_decisions(out, "read").query("kept")["key"])
    for stage in ("resolution", "quality", "phash"):
        d = read_decisions(out, stage)
        kept -= set(d.loc[~d["kept"], "key"])
    assert set(index["key"]) == kept
    labels = pd.read_parquet(demo_pool_dir / "labels.parquet").set_index("key")
    plain = [k for k in index["key"] if labels.loc[k, "category"] == "person"]
    assert len(plain) > 10
    for k in plain:
        assert shas[k] == hashlib.sha256((demo_pool_dir / labels.loc[k, "file"]).read_bytes()).hexdigest()

    # resume on s3: the shard records validate against the objects, nothing is rewritten
    capsys.readouterr()
    assert main(cmd) == 0
    again = storage.read_json(storage.join(out, "run.json"))
    assert again["tasks_resumed"] == again["tasks"] and again["shards_skipped"] == again["shards"] == n


def test_storage_layer_local_and_s3(s3, tmp_path, monkeypatch):
    from humans.curation.raytools import LocationError, resolve_location

    monkeypatch.chdir(tmp_path)
    assert storage.is_remote("s3://b/x") and not storage.is_remote("/a/b") and not storage.is_remote("http://h/x")
    assert resolve_location("rel/out", "--out") == str(tmp_path / "rel" / "out")
    assert resolve_location("s3://b/out/", "--out") == "s3://b/out"
    assert resolve_location("https://h/x-{0..3}.tar", "--input") == "https://h/x-{0..3}.tar"
    assert resolve_location("pipe:cat x.tar", "--input") == "pipe:cat x.tar"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # as in the driver of a submitted job
    with pytest.raises(LocationError, match="relative path"):
        resolve_location("rel/out", "--out")
    assert resolve_location(str(tmp_path), "--out") == str(tmp_path)
    for base in (str(tmp_path / "local"), f"{s3}/prefix"):
        f = storage.join(base, "a", "b.json")
        assert not storage.exists(f) and storage.size(f) is None and storage.list_files(base) == []
        storage.write_json(f, {"x": 1})
        assert storage.read_json(f) == {"x": 1} and storage.is_file(f) and not storage.is_file(base)
        storage.write_bytes(storage.join(base, "top.bin"), b"12345")
        assert storage.list_files(base) == [("top.bin", 5)]
        assert storage.list_files(base, recursive=True) == [("a/b.json", storage.size(f)), ("top.bin", 5)]
        storage.delete(f)
        storage.delete(f)  # no error when gone
        assert not storage.exists(f)
    assert sorted(os.listdir(tmp_path)) == ["local"]  # the s3 URIs never touched the local disk
