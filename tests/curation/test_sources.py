"""curation.sources: folders, labelled folders and tar/WebDataset shards planned and read back."""
from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from humans.curation.sources import PoolSpecError, PoolTask, path_keys, plan_pool, read_task, sanitize_key
from humans.shared.imageio import decode_rgb, encode_jpeg, encode_png
from humans.shared.schema import KEY_RE


def _img(seed: int) -> bytes:
    return encode_jpeg(np.random.default_rng(seed).integers(0, 256, (16, 24, 3), dtype=np.uint8), 90)


def test_keys_are_valid_stable_and_collision_safe():
    rels = ["a.jpg", "a.png", "dir/b c.jpg", "dir/b_c.jpg", "dir_b_c.jpg", "ünï/cødé.webp", "x-1_Y.JPEG"]
    keys = path_keys(rels)
    assert keys == path_keys(list(rels))
    assert all(KEY_RE.match(k) for k in keys) and len(set(keys)) == len(keys)
    assert keys[4] == "dir_b_c" and keys[6] == "x-1_Y"  # clean stems stay as they are
    assert keys[0].startswith("a-") and keys[1].startswith("a-")  # same stem, two files: both hashed
    assert keys[2].startswith("dir_b_c-") and keys[3].startswith("dir_b_c-") and keys[2] != keys[3]
    assert sanitize_key("ok_key-1") == "ok_key-1" and sanitize_key("a.b") != sanitize_key("a/b")


def test_folder_pool_recursive_sorted_and_chunked(tmp_path):
    files = {f"sub/{i:02d}.jpg": _img(i) for i in range(7)}
    files.update({"top.png": encode_png(np.zeros((8, 8, 3), np.uint8)), "odd name!.jpg": _img(99),
                  "notes.txt": b"ignored", ".hidden.jpg": _img(5), "sub/.cache/x.jpg": _img(6)})
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    tasks = plan_pool(str(tmp_path), items_per_task=3)
    assert len(tasks) == 3 and [len(t) for t in tasks] == [3, 3, 3]
    assert plan_pool(str(tmp_path), items_per_task=3) == tasks  # same listing -> same plan
    assert pickle.loads(pickle.dumps(tasks[0])) == tasks[0]
    assert len({t.task_id for t in tasks}) == 3 and all(KEY_RE.match(t.task_id) for t in tasks)
    items = [it for t in tasks for it in read_task(t)]
    rels = [os.path.relpath(it.source, tmp_path) for it in items]
    assert rels == sorted(rels) and len(items) == 9  # .txt and hidden files skipped
    assert {"sub_00-", "top", "odd_name"} <= {it.key[:7] if it.key.startswith("sub") else it.key.split("-")[0]
                                               for it in items}
    by_rel = dict(zip(rels, items))
    assert by_rel["sub/03.jpg"].data == files["sub/03.jpg"] and by_rel["top.png"].key == "top"
    # a file that vanished after planning is an item with a named error, not a crash
    os.remove(tmp_path / "sub/05.jpg")
    after = {it.source: it for t in tasks for it in read_task(t)}
    assert after[str(tmp_path / "sub/05.jpg")].error == "missing_file"
    assert "no longer exists" in after[str(tmp_path / "sub/05.jpg")].detail


def test_labelled_pool_folder_uses_its_keys(tmp_path):
    (tmp_path / "images").mkdir()
    for k in ("p1", "p2"):
        (tmp_path / "images" / f"{k}.jpg").write_bytes(_img(len(k)))
    pq.write_table(pa.table({"key": ["p2", "p1"], "file": ["images/p2.jpg", "images/p1.jpg"]}),
                   tmp_path / "labels.parquet")
    items = [it for t in plan_pool(str(tmp_path)) for it in read_task(t)]
    assert [it.key for it in items] == ["p1", "p2"] and all(it.data for it in items)
    # the images folder alone gives the same keys
    assert [it.key for t in plan_pool(str(tmp_path / "images")) for it in read_task(t)] == ["p1", "p2"]


def _write_shards(folder, n_shards=3, per_shard=4):
    expected = {}
    for s in range(n_shards):
        with wds.TarWriter(str(folder / f"pool-{s:06d}.tar")) as sink:
            for i in range(per_shard):
                key = f"s{s}_{i:03d}"
                data = _img(100 * s + i)
                expected[key] = data
                sink.write({"__key__": key, "jpg": data, "json": {"i": i}})
    return expected


def test_tar_shards_brace_glob_folder_and_single(tmp_path):
    expected = _write_shards(tmp_path)
    specs = [str(tmp_path / "pool-{000000..000002}.tar"), str(tmp_path / "pool-*.tar"), str(tmp_path)]
    plans = [plan_pool(s) for s in specs]
    assert all(len(p) == 3 and all(t.kind == "tar" for t in p) for p in plans)
    assert [t.task_id for t in plans[0]] == [t.task_id for t in plans[1]] == [t.task_id for t in plans[2]]
    items = [it for t in plans[0] for it in read_task(t)]
    assert {it.key: it.data for it in items} == expected
    assert items[0].source.endswith("pool-000000.tar#s0_000.jpg") and items[0].source.startswith("tar://")
    # the same samples webdataset itself reads
    ds = wds.WebDataset(str(tmp_path / "pool-{000000..000002}.tar"), shardshuffle=False, empty_check=False)
    assert [s["__key__"] for s in ds] == [it.key for it in items]
    assert len(plan_pool(str(tmp_path / "pool-000001.tar"))) == 1
    with pytest.raises(PoolSpecError, match="not found"):
        plan_pool(str(tmp_path / "pool-{000000..000004}.tar"))


def _add(tar: tarfile.TarFile, name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_tar_edge_cases_no_image_member_odd_keys_and_broken_shard(tmp_path):
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "dir/a.b.jpg", _img(1))  # key "dir/a", extension "b.jpg"
        _add(tar, "dir/a.b.json", b"{}")
        _add(tar, "only_meta.json", b"{}")  # a sample without an image
        _add(tar, "x.png", encode_png(np.full((4, 4, 3), 7, np.uint8)))
        _add(tar, "x.cls", b"3")
    items = list(read_task(plan_pool(str(path))[0]))
    assert [it.error for it in items] == [None, "no_image_member", None]
    assert items[0].key.startswith("dir_a-") and KEY_RE.match(items[0].key)
    assert decode_rgb(items[0].data).shape == (16, 24, 3)
    assert items[2].key == "x" and decode_rgb(items[2].data)[0, 0, 0] == 7

    full = (tmp_path / "pool-000000.tar")
    _write_shards(tmp_path, n_shards=1, per_shard=6)
    raw = full.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[: len(raw) // 2])  # a shard cut mid-way: the first samples, then read_error
    items = list(read_task(plan_pool(str(cut))[0]))
    assert items[-1].error == "read_error" and "read-error" in items[-1].key
    good = [it for it in items if it.error is None]
    assert 1 <= len(good) < 6 and [it.key for it in good] == [f"s0_{i:03d}" for i in range(len(good))]


def test_bad_specs_have_clear_errors(tmp_path):
    with pytest.raises(PoolSpecError, match="not found"):
        plan_pool(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoolSpecError, match="no image files"):
        plan_pool(str(tmp_path / "empty"))
    (tmp_path / "list.csv").write_text("link\nhttp://x/y.jpg\n")
    with pytest.raises(PoolSpecError, match="'url' column"):
        plan_pool(str(tmp_path / "list.csv"))
    with pytest.raises(ValueError, match="kind"):
        list(read_task(PoolTask("t", "ftp", "x")))


def test_url_list_tasks_cover_every_row_once_reading_only_their_row_groups(tmp_path):
    from humans.curation.sources import _read_url_rows

    path = tmp_path / "urls.parquet"
    urls = [f"http://example.invalid/{i}.jpg" for i in range(1000)]
    pq.write_table(pa.table({"url": urls}), path, row_group_size=64)
    tasks = plan_pool(str(path), items_per_task=300)
    assert [(t.start, t.stop) for t in tasks] == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    rows = [u for t in tasks for u, _ in _read_url_rows(t.root, t.start, t.stop)]
    assert rows == urls
    pq.write_table(pa.table({"key": ["a"], "file": ["../outside.jpg"]}), tmp_path / "labels.parquet")
    with pytest.raises(PoolSpecError, match="inside"):
        plan_pool(str(tmp_path))
