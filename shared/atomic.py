"""Atomic writes: the one way the project writes a file (or a folder) under its final name.

Everything is written to a temporary name beside the target (``NAME.tmpPID``, or the ``tmp`` given)
and renamed with ``os.replace`` only when whole, so a reader never sees a half-written file and a
killed writer leaves only a temporary name (``shared.shards.remove_partial_files`` clears those).

- ``atomic_write_bytes`` / ``atomic_write_text`` / ``atomic_write_json``: one value at once;
- ``atomic_write(path)``: a context manager yielding an open file for streaming writes;
- ``atomic_path(path)``: a context manager yielding the temporary path, for writers that take a
  path (safetensors, ``torch.onnx.export``, matplotlib, pyarrow) or build a folder;
- ``AtomicFile``: the same with explicit ``commit()`` / ``abort()``, for writers whose output spans
  several calls (shards, feature caches).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any, Iterator


def temp_name(path: str | Path, suffix: str = "") -> Path:
    """The temporary name of ``path`` for this process: ``NAME.tmpPID`` (+ ``suffix``, e.g. ``.png``
    for writers that pick the format from the extension)."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp{os.getpid()}{suffix}")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


class AtomicFile:
    """A temporary path ``tmp`` for ``path``; ``commit()`` renames it into place (a folder replaces
    an existing folder), ``abort()`` removes it."""

    def __init__(self, path: str | Path, tmp: str | Path | None = None, suffix: str = ""):
        self.path = Path(path)
        self.tmp = Path(tmp) if tmp is not None else temp_name(self.path, suffix)

    def commit(self) -> Path:
        if self.tmp.is_dir() and self.path.is_dir():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        _remove(self.tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, tmp: str | Path | None = None, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; renamed into place when the block ends
    normally, removed when it raises."""
    f = AtomicFile(path, tmp, suffix)
    try:
        yield f.tmp
        f.commit()
    except BaseException:
        f.abort()
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", fsync: bool = True, tmp: str | Path | None = None,
                 **open_kw) -> Iterator[IO]:
    """Yield an open file (``mode`` "wb" or "w") whose contents replace ``path`` when the block ends
    normally (flushed and, with ``fsync``, on disk first; ``fsync=False`` for many small files whose
    loss in a power cut is acceptable). ``tmp``: another temporary name than ``NAME.tmpPID``."""
    with atomic_path(path, tmp) as tmp:
        with open(tmp, mode, **open_kw) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True, tmp: str | Path | None = None) -> None:
    with atomic_write(path, "wb", fsync=fsync, tmp=tmp) as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2, sort_keys: bool = True, **dumps_kw) -> None:
    """``obj`` as JSON (``json.dumps`` options; default: indented, keys sorted)."""
    atomic_write_bytes(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, **dumps_kw).encode())


__all__ = ["AtomicFile", "atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "temp_name"]
