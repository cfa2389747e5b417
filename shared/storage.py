"""One filesystem layer for local paths and object-store URIs (``s3://``, ``gs://``, ...), on pyarrow.fs.

Every location is a plain string: a local path or a URI. Curation reads its pool and writes shards,
index, manifest, decisions, work records and reports only through these functions, so the same run
works on a shared POSIX disk and on object storage.

Atomic everywhere: ``write_bytes`` on a local path writes a temporary file and renames it (the
``shared.shards`` convention); on an object store it sends the complete object in one upload, which
becomes visible only whole (a PUT, or a multipart upload completed on close), so a reader never sees a
partial object under its final name. Large files (shards) are built locally and sent with
``put_file`` once whole.

S3 endpoint and credentials come from the usual AWS variables (``AWS_ENDPOINT_URL`` for an
S3-compatible server such as MinIO or moto, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``), read by pyarrow's S3 client. ``register_webdataset()`` lets the
``webdataset`` library open ``s3://`` (and other pyarrow) URIs through this layer.
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import shutil
from typing import Any, BinaryIO
from urllib.parse import urlparse

from .atomic import atomic_path, atomic_write_bytes

OBJECT_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")  # what pyarrow.fs opens
_FS_CACHE: dict[tuple, Any] = {}


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names an object store (``s3://``, ``gs://``, ...: OBJECT_SCHEMES)."""
    s = str(uri)
    return "://" in s and urlparse(s).scheme.lower() in OBJECT_SCHEMES


def _local(uri: str) -> str:
    s = str(uri)
    return urlparse(s).path if s.startswith("file://") else s


def resolve(uri: str) -> str:
    """``uri`` made location-independent: a local path becomes absolute, a URI stays as it is."""
    return str(uri).rstrip("/") if is_remote(uri) else os.path.abspath(os.path.expanduser(_local(uri)))


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return posixpath.join(str(base).rstrip("/"), *[str(p).strip("/") for p in parts])
    return os.path.join(_local(base), *[str(p) for p in parts])


def basename(uri: str) -> str:
    return posixpath.basename(str(uri).rstrip("/")) if is_remote(uri) else os.path.basename(str(uri))


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for ``uri``; object-store clients are cached per process."""
    import pyarrow.fs as pafs

    if not is_remote(uri):
        return pafs.LocalFileSystem(), os.path.abspath(_local(uri))
    p = urlparse(str(uri))
    key = (p.scheme, p.netloc, os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_ACCESS_KEY_ID"))
    fs = _FS_CACHE.get(key)
    if fs is None:
        fs, _ = pafs.FileSystem.from_uri(f"{p.scheme}://{p.netloc}/")
        _FS_CACHE[key] = fs
    return fs, (p.netloc + p.path).rstrip("/")


def _info(uri: str):
    fs, path = filesystem(uri)
    return fs.get_file_info(path)


def is_file(uri: str) -> bool:
    import pyarrow.fs as pafs

    if not is_remote(uri):
        return os.path.isfile(_local(uri))
    return _info(uri).type == pafs.FileType.File


def is_dir(uri: str) -> bool:
    import pyarrow.fs as pafs

    if not is_remote(uri):
        return os.path.isdir(_local(uri))
    return _info(uri).type == pafs.FileType.Directory


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    if not is_remote(uri):
        return os.path.exists(_local(uri))
    return _info(uri).type != pafs.FileType.NotFound


def size(uri: str) -> int | None:
    """Size in bytes, or None when there is no such file."""
    import pyarrow.fs as pafs

    if not is_remote(uri):
        try:
            return os.stat(_local(uri)).st_size
        except OSError:
            return None
    info = _info(uri)
    return info.size if info.type == pafs.FileType.File else None


def makedirs(uri: str) -> None:
    """Create a local folder (object stores have no folders: nothing to do)."""
    if not is_remote(uri):
        os.makedirs(_local(uri), exist_ok=True)


def open_input(uri: str) -> BinaryIO:
    """A readable binary file object (seekable) for ``uri``."""
    if not is_remote(uri):
        return open(_local(uri), "rb")
    fs, path = filesystem(uri)
    return fs.open_input_file(path)


def read_bytes(uri: str) -> bytes:
    with open_input(uri) as fh:
        return fh.read()


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` atomically (local: temp + rename; object store: one whole upload)."""
    if not is_remote(uri):
        path = _local(uri)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write_bytes(path, data)
        return
    fs, path = filesystem(uri)
    with fs.open_output_stream(path) as out:
        out.write(data)


def write_json(uri: str, obj: Any) -> None:
    write_bytes(uri, json.dumps(obj, indent=2, sort_keys=True).encode())


def put_file(local_path: str, uri: str) -> None:
    """Move the finished local file ``local_path`` to ``uri`` (a rename locally, an upload remotely)."""
    if not is_remote(uri):
        dest = _local(uri)
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        try:
            os.replace(local_path, dest)
        except OSError:  # another device: copy to a temp name beside the target, then rename
            with atomic_path(dest) as tmp:
                shutil.copyfile(local_path, tmp)
            os.unlink(local_path)
        return
    fs, path = filesystem(uri)
    with open(local_path, "rb") as src, fs.open_output_stream(path) as out:
        shutil.copyfileobj(src, out, 8 << 20)
    os.unlink(local_path)


def delete(uri: str) -> None:
    """Delete a file; no error if it does not exist."""
    if not is_remote(uri):
        try:
            os.unlink(_local(uri))
        except FileNotFoundError:
            pass
        return
    fs, path = filesystem(uri)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def list_files(uri: str, recursive: bool = False) -> list[tuple[str, int]]:
    """(relative POSIX path, size) of the files under folder/prefix ``uri``, sorted; [] if none.

    Locally: regular files (links to them included), hidden or not, without descending into linked
    folders; names that are not valid UTF-8 keep their surrogate escapes (as ``os`` gives them)."""
    import pyarrow.fs as pafs

    if not is_remote(uri):
        return _list_local(_local(uri), recursive)
    fs, base = filesystem(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=recursive, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted((posixpath.relpath(i.path, base), i.size) for i in infos if i.type == pafs.FileType.File)


def _list_local(base: str, recursive: bool) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(base, rel_dir) if rel_dir else base))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            try:
                if e.is_file():
                    out.append((rel, e.stat().st_size))
                elif recursive and e.is_dir(follow_symlinks=False):
                    stack.append(rel)
            except OSError:  # vanished, or a broken link: not a file
                continue
    return sorted(out)


def read_parquet(uri: str, columns: list[str] | None = None):
    """The parquet file at ``uri`` as an Arrow table."""
    import pyarrow.parquet as pq

    if not is_remote(uri):
        return pq.read_table(_local(uri), columns=columns)
    fs, path = filesystem(uri)
    return pq.read_table(path, columns=columns, filesystem=fs)


def parquet_file(uri: str):
    import pyarrow.parquet as pq

    return pq.ParquetFile(open_input(uri))


def write_parquet(uri: str, table) -> None:
    """Write an Arrow table atomically."""
    import pyarrow.parquet as pq

    if not is_remote(uri):
        path = _local(uri)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(uri, buf.getvalue())


def gopen_handler(url: str, mode: str = "rb", bufsize: int = 8192, **_kw) -> BinaryIO:
    """A ``webdataset.gopen`` handler: opens object-store URIs through pyarrow.fs."""
    if mode != "rb":
        raise ValueError(f"{url}: only reading is supported through webdataset (mode {mode!r})")
    return open_input(url)


def register_webdataset(schemes: tuple[str, ...] = ("s3", "gs", "gcs", "abfs")) -> None:
    """Let ``webdataset.WebDataset('s3://bucket/x-{000000..000009}.tar')`` read through this layer."""
    import importlib

    gopen = importlib.import_module("webdataset.gopen")  # the module (the package exports a function of that name)
    for s in schemes:
        gopen.gopen_schemes[s] = gopen_handler
