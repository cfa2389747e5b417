"""File helpers of the report package that do not import ``shared.shards``.

``shared.shards`` imports webdataset, which imports torch: ~1 GiB of resident memory and seconds of
start-up that a report or a verification never needs. These helpers compute exactly what
``shared.shards`` computes (tests/report checks that they agree) using only the standard library.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from shared.schema import SHARD_RE


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write through a temporary file and an atomic rename (same as shared.shards.atomic_write_bytes)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def keys_digest(keys: Iterable[str]) -> str:
    """sha256 over the sorted keys joined by newlines (the manifest's ``keys_sha256``)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def list_shards(out_dir: str | Path) -> list[Path]:
    """Whole shards (``PREFIX-NNNNNN.tar``) in ``out_dir``, sorted by name; temporary files ignored."""
    return sorted(p for p in Path(out_dir).glob("*.tar") if SHARD_RE.match(p.name))
