"""Writing and reading WebDataset shards atomically, with a manifest of counts and checksums.

``ShardWriter`` streams samples into ``PREFIX-NNNNNN.tar.tmp`` (a plain POSIX tar, the WebDataset
layout ``KEY.EXT``) and renames the file only when it is whole, so a killed writer never leaves a
truncated shard under a real name. The manifest is rewritten atomically after each shard closes.

Shards are byte-reproducible: every member has the same fixed metadata (mtime 0, uid/gid 0, empty
user/group names, mode 0444) and members are written in the order given, so the same samples give
the same bytes and the same sha256 on every run and machine. ``remove_partial_files`` deletes the
temporary files (``*.tmp``, ``*.tmpPID``) an interrupted writer leaves behind.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .atomic import AtomicFile, atomic_write_bytes, atomic_write_json  # noqa: F401 - re-exported
from .schema import MANIFEST_NAME, SHARD_RE, check_key, shard_name


@dataclass
class ShardInfo:
    name: str
    samples: int
    bytes: int
    sha256: str
    keys_sha256: str  # sha256 over the sorted sample keys: verify checks membership cheaply


# Fixed metadata of every shard member: the bytes of a shard depend only on its samples.
MEMBER_MTIME = 0
MEMBER_MODE = 0o444
_PARTIAL_RE = re.compile(r"\.tmp\d*$")


def is_partial_file(name: str) -> bool:
    """Whether ``name`` is a temporary file of an atomic write (``X.tmp`` or ``X.tmpPID``)."""
    return bool(_PARTIAL_RE.search(name))


def remove_partial_files(root: str | Path) -> list[str]:
    """Delete the temporary files of interrupted atomic writes under ``root`` (recursively); returns
    their paths relative to ``root``. Call it only when no writer is running in ``root``."""
    root = Path(root)
    removed = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if is_partial_file(name):
                p = Path(dirpath, name)
                p.unlink(missing_ok=True)
                removed.append(p.relative_to(root).as_posix())
    return sorted(removed)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def keys_digest(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


class ShardWriter:
    """Write one shard: ``add(key, {ext: bytes|dict})`` then ``close()`` (or use as a context manager).

    The shard appears under its final name only after ``close`` succeeded; ``abort`` (or an exception
    inside the ``with`` block) removes the temporary file.
    """

    def __init__(self, out_dir: str | Path, prefix: str, index: int):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = shard_name(prefix, index)
        self.final = self.out_dir / self.name
        self._file = AtomicFile(self.final, tmp=self.out_dir / (self.name + ".tmp"))
        self.tmp = self._file.tmp
        self._fh = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.PAX_FORMAT)
        self.keys: list[str] = []

    def _member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = MEMBER_MTIME
        info.mode = MEMBER_MODE
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def add(self, key: str, fields: dict[str, bytes | dict | str]) -> None:
        """Add sample ``key``: one member ``KEY.EXT`` per field, in the order of ``fields``."""
        check_key(key)
        for ext, value in fields.items():
            if isinstance(value, dict):
                value = json.dumps(value, sort_keys=True).encode()
            elif isinstance(value, str):
                value = value.encode()
            self._member(f"{key}.{ext}", bytes(value))
        self.keys.append(key)

    def close(self) -> ShardInfo:
        self._tar.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        info = ShardInfo(self.name, len(self.keys), self.tmp.stat().st_size, file_sha256(self.tmp),
                         keys_digest(self.keys))
        self._file.commit()
        return info

    def abort(self) -> None:
        try:
            self._tar.close()
            self._fh.close()
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
        self._file.abort()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_manifest(out_dir: str | Path, shards: Iterable[ShardInfo], extra: dict | None = None) -> Path:
    """Atomically (re)write ``manifest.json`` listing ``shards`` sorted by name."""
    entries = sorted((asdict(s) for s in shards), key=lambda e: e["name"])
    doc = {"format": "humans-shards-v1", "shards": entries,
           "total_samples": sum(e["samples"] for e in entries), **(extra or {})}
    path = Path(out_dir) / MANIFEST_NAME
    atomic_write_json(path, doc)
    return path


def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {out_dir}: not a curated shard directory")
    return json.loads(path.read_text())


def list_shards(out_dir: str | Path) -> list[Path]:
    """Whole shards in ``out_dir`` (temporary files are ignored), sorted by name."""
    return sorted(p for p in Path(out_dir).glob("*.tar") if SHARD_RE.match(p.name))


def iter_tar_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """Samples of one shard as dicts ``{"__key__": key, ext: bytes}``, read with the webdataset library."""
    import webdataset as wds

    ds = wds.WebDataset(str(path), shardshuffle=False, empty_check=False)
    yield from ds


def tar_member_names(path: str | Path) -> list[str]:
    """Member names read with the standard ``tarfile`` module (an independent reader of the format)."""
    with tarfile.open(path, "r") as tf:
        return tf.getnames()


__all__ = ["ShardInfo", "ShardWriter", "atomic_write_bytes", "atomic_write_json", "file_sha256",
           "is_partial_file", "iter_tar_samples", "keys_digest", "list_shards", "read_manifest",
           "remove_partial_files", "tar_member_names", "write_manifest"]
