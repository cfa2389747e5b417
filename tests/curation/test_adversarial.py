"""An adversarial pool, generated here by code (no committed binaries), through the real pipeline on
local Ray in ONE run: every odd-file and broken-image class gets its expected named reason (with a
detail for the file-level ones), the job finishes, nothing outside the pool root is read, no good
image is lost, and temp files an interrupted earlier run left in the output are removed.

Odd configs are refused before any work; they are covered by tests/curation/test_config.py."""
from __future__ import annotations

import hashlib
import os
import shutil

import pandas as pd

from humans.curation import run_pipeline
from humans.curation.decisions import read_decisions
from humans.curation.pool.damage import png_bomb
from humans.curation.sources import path_keys
from humans.shared.imageio import encode_jpeg

PIPE = "humans-test"


def _make_corpus(root, outside, people: list[bytes]) -> dict[str, str]:
    """Write the pool; returns {file name: expected read reason ('' = read fine)}."""
    import numpy as np

    root.mkdir()
    outside.mkdir()
    expect: dict[str, str] = {}

    def put(name: str, data: bytes, reason: str) -> None:
        (root / name).write_bytes(data)
        expect[name] = reason

    put("good_a.jpg", people[0], "")
    put("good_b.jpg", people[1], "")
    (root / ".store").mkdir()  # hidden: not walked, but a link into it stays inside the root
    (root / ".store" / "c.jpg").write_bytes(people[2])
    os.symlink(".store/c.jpg", root / "good_linked.jpg")
    expect["good_linked.jpg"] = ""
    # odd files
    os.mkfifo(root / "fifo.jpg")
    expect["fifo.jpg"] = "not_regular_file"
    (outside / "person.jpg").write_bytes(people[3])  # would be kept if it were read
    os.mkfifo(outside / "fifo.jpg")  # would hang the job if it were opened
    os.symlink(outside / "person.jpg", root / "link_out.jpg")
    os.symlink(outside / "fifo.jpg", root / "link_out_fifo.jpg")
    os.symlink("../" + outside.name + "/person.jpg", root / "link_out_relative.jpg")
    expect.update({"link_out.jpg": "outside_pool", "link_out_fifo.jpg": "outside_pool",
                   "link_out_relative.jpg": "outside_pool"})
    os.symlink(root / "deleted.jpg", root / "broken_link.jpg")
    os.symlink("loop.jpg", root / "loop.jpg")
    expect.update({"broken_link.jpg": "broken_symlink", "loop.jpg": "broken_symlink"})
    os.symlink(outside, root / "linked_folder")  # never walked into: nothing from it is listed
    (root / "folder.jpg").mkdir()  # a folder under an image name: not an item
    with open(root / "huge.jpg", "wb") as fh:  # over read.max_bytes (set below): refused unread
        fh.truncate(3_000_000)
    expect["huge.jpg"] = "too_many_bytes"
    # broken images
    put("empty.jpg", b"", "empty")
    put("text.jpg", b"<html>not an image</html>\n" * 20, "unsupported_format")
    put("truncated.jpg", people[0][: len(people[0]) // 3], "truncated")
    put("corrupt.jpg", b"\xff\xd8\xff\xe0" + os.urandom(2000), "corrupt")
    put("bomb.png", png_bomb(60000, 60000), "decompression_bomb")
    # an odd name: not valid UTF-8 (a small grey frame, read fine, rejected later for its size)
    odd = os.fsencode(str(root)) + b"/caf\xe9.jpg"
    with open(odd, "wb") as fh:
        fh.write(encode_jpeg(np.full((40, 60, 3), 128, np.uint8)))
    expect[os.fsdecode(b"caf\xe9.jpg")] = ""
    return expect


def test_adversarial_pool_through_the_real_pipeline(demo_pool_dir, ray_local, tmp_path):
    labels = pd.read_parquet(demo_pool_dir / "labels.parquet")
    clean = (labels["category"] == "person") & (labels["expected_reject_stage"].fillna("") == "")
    people_files = labels.loc[clean, "file"].tolist()[:4]
    people = [(demo_pool_dir / f).read_bytes() for f in people_files]
    root, outside = tmp_path / "pool", tmp_path / "outside"
    expect = _make_corpus(root, outside, people)
    out = tmp_path / "run"
    stale = ["humans-test-000003.tar.tmp", "work/done/files-000000-x.json.tmp4242",
             "stages/02_quality/files-000000-x.parquet.tmp7", "index.parquet.tmp"]
    for rel in stale:  # what a run killed while writing leaves behind
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"half written")

    # the embedding dedup is switched off: it only costs time here (every class is decided earlier); the
    # detector sees 640 px copies whichever detector is installed: this test is about reading, and both
    # detectors find these four people at that size (MediaPipe's default 384 px copy misses one of them)
    summary = run_pipeline(str(root), str(out), pipeline=PIPE,
                           overrides={"read.max_bytes": 2_000_000, "embedding.enabled": False,
                                          "person.analysis_long_side": 640})

    keys = dict(zip(path_keys(sorted(expect)), sorted(expect)))
    read = read_decisions(out, "read").set_index("key")
    assert sorted(read.index) == sorted(keys), "every pool item has exactly one read decision"
    for key, name in keys.items():
        row = read.loc[key]
        assert row["reason"] == expect[name], (name, row["reason"], row["detail"])
        if expect[name]:
            assert isinstance(row["detail"], str) and len(row["detail"]) > 10, (name, row["detail"])
    by_name = {name: read.loc[key] for key, name in keys.items()}
    assert "FIFO" in by_name["fifo.jpg"]["detail"]
    assert str(outside) in by_name["link_out.jpg"]["detail"]
    assert "deleted.jpg" in by_name["broken_link.jpg"]["detail"]
    assert "loop" in by_name["loop.jpg"]["detail"]
    assert "read.max_bytes=2000000" in by_name["huge.jpg"]["detail"]
    assert by_name[os.fsdecode(b"caf\xe9.jpg")]["source"].endswith("caf\\xe9.jpg")
    # nothing lost, nothing from outside the root
    index = pd.read_parquet(out / "index.parquet")
    kept = {keys[k] for k in index["key"]}
    assert kept == {"good_a.jpg", "good_b.jpg", "good_linked.jpg"}, kept
    outside_sha = hashlib.sha256((outside / "person.jpg").read_bytes()).hexdigest()
    assert outside_sha not in set(index["image_sha256"])
    assert summary["samples"] == 3 and summary["stages"]["00_read"]["in"] == len(expect)
    # temp files of the interrupted earlier writes are gone
    assert not [rel for rel in stale if (out / rel).exists()]
    shutil.rmtree(root)  # the FIFOs and links go with the test's folder
