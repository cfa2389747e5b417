"""shared.atomic, the one way files are written: whole or not at all, never a half file under the
final name, and no temporary left behind by a failed write."""
from __future__ import annotations

import json
import os

import pytest

from humans.shared.atomic import AtomicFile, atomic_path, atomic_write, atomic_write_bytes, atomic_write_json
from humans.shared.shards import is_partial_file


def test_writes_replace_whole_files(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"b": 1, "a": [1, 2]})
    assert p.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2, sort_keys=True)
    atomic_write_json(p, {"b": 1, "a": 2}, indent=None, sort_keys=False)  # json.dumps' own bytes
    assert p.read_text() == '{"b": 1, "a": 2}'
    atomic_write_bytes(p, b"xyz")
    assert p.read_bytes() == b"xyz" and os.listdir(tmp_path) == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(p) as fh:
            fh.write(b"half")
            assert is_partial_file(fh.name.rsplit("/", 1)[-1])  # the temporary is named as such
            raise RuntimeError("killed")
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_path_writers_folders_and_commit_abort(tmp_path):
    out = tmp_path / "plot.png"
    with atomic_path(out, suffix=".png") as tmp:
        assert tmp.name.endswith(".png") and tmp != out
        tmp.write_bytes(b"png")
    assert out.read_bytes() == b"png"
    d = tmp_path / "run"
    d.mkdir()
    (d / "stale").write_text("x")
    f = AtomicFile(d, tmp=tmp_path / "run.tmp")
    f.tmp.mkdir()
    (f.tmp / "new").write_text("y")
    f.commit()  # a folder replaces the folder
    assert sorted(os.listdir(d)) == ["new"] and not (tmp_path / "run.tmp").exists()
    g = AtomicFile(tmp_path / "x.bin")
    g.tmp.write_bytes(b"1")
    g.abort()
    assert not g.tmp.exists() and not (tmp_path / "x.bin").exists()
