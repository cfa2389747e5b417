"""Bounded reading of one file of a folder pool: only regular files, only inside the pool root.

``read_local(root, rel, cfg)`` never blocks on a FIFO or device (the file is opened non-blocking and
checked with ``fstat`` before any read), never follows a symlink out of the pool root unless
``cfg.follow_links_outside`` is set, refuses files over ``cfg.max_bytes`` and gives up on a read
that takes longer than ``cfg.timeout_s`` (the read runs in a daemon thread that is abandoned on
timeout, so a hung network mount stalls one item, not the job). Every refusal is a named reason
with a detail that says what was found:

- ``not_regular_file``: a FIFO, socket, device or directory under an image name;
- ``broken_symlink``: a link whose target does not exist (or a link loop);
- ``outside_pool``: a link (or a path through a linked folder) that resolves outside the root;
- ``too_many_bytes``: larger than ``max_bytes``;
- ``read_timeout``: the read did not finish within ``timeout_s``;
- ``missing_file``: the file vanished between planning and reading;
- ``read_error``: any other OS error (permission denied, I/O error), with its message.
"""
from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from humans.shared.config import StrictModel
from humans.shared.imageio import MAX_BYTES

READ_REASONS = ("not_regular_file", "broken_symlink", "outside_pool", "too_many_bytes", "read_timeout",
                "missing_file", "read_error")
_CHUNK = 1 << 20


class ReadConfig(StrictModel):
    """How files of a folder pool are read (tar shards and URL lists have their own limits)."""

    max_bytes: int = Field(MAX_BYTES, ge=1, le=MAX_BYTES, description="files larger than this are refused "
                                                                      "(too_many_bytes)")
    timeout_s: float = Field(60.0, gt=0, description="a file not read within this many seconds is refused "
                                                     "(read_timeout)")
    follow_links_outside: bool = Field(False, description="read symlinks that resolve outside the pool root "
                                                          "(default: refused as outside_pool)")


@dataclass
class LocalRead:
    data: bytes | None
    error: str | None = None
    detail: str | None = None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return f"not a regular file (mode {oct(mode)})"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _read_fd(fd: int, limit: int, out: dict) -> None:
    try:
        chunks, total = [], 0
        while not out.get("stop"):
            block = os.read(fd, _CHUNK)
            if not block:
                break
            total += len(block)
            if total > limit:
                out["too_big"] = total
                return
            chunks.append(block)
        out["data"] = b"".join(chunks)
    except OSError as exc:
        out["error"] = exc
    finally:
        os.close(fd)


def read_bounded(fd: int, limit: int, timeout_s: float) -> LocalRead:
    """Read the open regular file ``fd`` (closed here) in a daemon thread, at most ``limit`` bytes."""
    out: dict = {}
    thread = threading.Thread(target=_read_fd, args=(fd, limit, out), daemon=True, name="pool-read")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        out["stop"] = True
        return LocalRead(None, "read_timeout", f"not read within {timeout_s:g} s (read.timeout_s)")
    if "too_big" in out:
        return LocalRead(None, "too_many_bytes", f"grew past {limit} bytes while being read (read.max_bytes)")
    if "error" in out:
        return LocalRead(None, "read_error", str(out["error"]))
    return LocalRead(out["data"])


def read_local(root: str | Path, rel: str, cfg: ReadConfig | None = None) -> LocalRead:
    """The bytes of ``root/rel``, or the named reason (and detail) why they are not read."""
    cfg = cfg or ReadConfig()
    root = Path(root).resolve()
    path = root / rel
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return LocalRead(None, "missing_file", f"{path} no longer exists")
    except OSError as exc:
        return LocalRead(None, "read_error", str(exc))
    is_link = stat.S_ISLNK(lst.st_mode)
    link = os.readlink(path) if is_link else None
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop on Python < 3.13
        loop = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP
        if not loop and not isinstance(exc, FileNotFoundError):
            return LocalRead(None, "read_error", f"cannot resolve {path}: {exc}")
        what = "is part of a link loop" if loop else "does not exist"
        if is_link:
            return LocalRead(None, "broken_symlink", f"symlink to {link!r}, which {what}")
        return LocalRead(None, "broken_symlink", f"a linked folder on the way to {path} {what}")
    if not cfg.follow_links_outside and not _inside(real, root):
        via = f"symlink to {link!r}" if is_link else "path through a linked folder"
        return LocalRead(None, "outside_pool", f"{via} resolves to {real}, outside the pool root {root} "
                                               f"(set read.follow_links_outside=true to read it)")
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of hanging; O_NOFOLLOW:
        # the resolved path must not have become a link since it was checked.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return LocalRead(None, "missing_file", f"{real} no longer exists")
    except OSError as exc:
        return LocalRead(None, "read_error", f"cannot open {real}: {exc.strerror}")
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return LocalRead(None, "read_error", str(exc))
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        target = f" (symlink to {link!r})" if is_link else ""
        return LocalRead(None, "not_regular_file", f"{_kind(st.st_mode)}{target}; only regular files are read")
    if st.st_size > cfg.max_bytes:
        os.close(fd)
        return LocalRead(None, "too_many_bytes", f"{st.st_size} bytes > read.max_bytes={cfg.max_bytes}")
    os.set_blocking(fd, True)
    return read_bounded(fd, cfg.max_bytes, cfg.timeout_s)
