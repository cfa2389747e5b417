"""Folder pools read only regular files inside the pool root: a FIFO is skipped at once (it used to
hang the job), a symlink out of the root is refused unless opted in, a broken symlink has a named
reason with detail, and every file has a size cap and a read timeout."""
from __future__ import annotations

import os
import time

import pytest

from humans.curation.localread import ReadConfig, read_bounded, read_local
from humans.curation.sources import plan_pool, read_task


def _mkpool(tmp_path):
    root = tmp_path / "pool"
    outside = tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "ok.jpg").write_bytes(b"\xff\xd8inside")
    (outside / "secret.jpg").write_bytes(b"\xff\xd8outside")
    os.mkfifo(root / "fifo.jpg")
    os.mkfifo(outside / "far_fifo.jpg")
    os.symlink(outside / "secret.jpg", root / "link_out.jpg")
    os.symlink(outside / "far_fifo.jpg", root / "link_out_fifo.jpg")
    os.symlink(root / "gone.jpg", root / "broken.jpg")
    os.symlink("loop.jpg", root / "loop.jpg")
    os.symlink("ok.jpg", root / "link_in.jpg")
    os.symlink(outside, root / "linked_dir")  # a folder link: never walked into
    return root, outside


def test_fifo_symlinks_and_broken_links_get_named_reasons_without_hanging(tmp_path):
    root, _ = _mkpool(tmp_path)
    tasks = plan_pool(str(root), items_per_task=100)
    t0 = time.perf_counter()
    items = {os.path.basename(it.source): it for t in tasks for it in read_task(t)}
    assert time.perf_counter() - t0 < 5  # the FIFO used to block here forever
    assert set(items) == {"ok.jpg", "fifo.jpg", "link_out.jpg", "link_out_fifo.jpg", "broken.jpg", "loop.jpg",
                          "link_in.jpg"}  # nothing from the linked folder
    assert items["ok.jpg"].data == b"\xff\xd8inside" and items["ok.jpg"].error is None
    assert items["link_in.jpg"].data == b"\xff\xd8inside"  # a link inside the root is fine
    fifo = items["fifo.jpg"]
    assert fifo.error == "not_regular_file" and "FIFO" in fifo.detail and fifo.data is None
    for name in ("link_out.jpg", "link_out_fifo.jpg"):
        it = items[name]
        assert it.error == "outside_pool" and it.data is None, name
        assert "elsewhere" in it.detail and "read.follow_links_outside" in it.detail
    assert items["broken.jpg"].error == "broken_symlink" and "gone.jpg" in items["broken.jpg"].detail
    assert "does not exist" in items["broken.jpg"].detail
    assert items["loop.jpg"].error == "broken_symlink" and "loop" in items["loop.jpg"].detail


def test_links_outside_the_root_are_read_only_when_opted_in(tmp_path):
    root, _ = _mkpool(tmp_path)
    cfg = ReadConfig(follow_links_outside=True)
    assert read_local(root, "link_out.jpg", cfg).data == b"\xff\xd8outside"
    far_fifo = read_local(root, "link_out_fifo.jpg", cfg)  # opted in, still never blocks on a FIFO
    assert far_fifo.error == "not_regular_file" and "symlink to" in far_fifo.detail


def test_size_cap_and_read_timeout(tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as fh:
        fh.truncate(3_000_000)
    res = read_local(tmp_path, "big.jpg", ReadConfig(max_bytes=1_000_000))
    assert res.error == "too_many_bytes" and "3000000 bytes > read.max_bytes=1000000" in res.detail
    assert read_local(tmp_path, "big.jpg", ReadConfig(max_bytes=4_000_000)).data == bytes(3_000_000)
    # a read that does not finish in time is given up (the reading thread is abandoned). A pipe whose
    # writer stays silent blocks the read for certain (a cached 3 MB file could finish within any
    # tiny timeout on a fast machine, which made this check flaky in CI).
    read_end, write_end = os.pipe()
    try:
        res = read_bounded(read_end, 4_000_000, timeout_s=0.2)
        assert res.error == "read_timeout" and "read.timeout_s" in res.detail
    finally:
        os.close(write_end)  # the abandoned thread's read returns b"" and it closes the read end


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_a_read_error_with_the_os_message(tmp_path):
    p = tmp_path / "locked.jpg"
    p.write_bytes(b"x")
    p.chmod(0)
    res = read_local(tmp_path, "locked.jpg")
    assert res.error == "read_error" and "Permission denied" in res.detail
