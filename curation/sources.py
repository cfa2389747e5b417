"""The web pool as input: which items exist, how they are split into tasks, how their bytes are read.

Owns ``plan_pool`` (a deterministic list of small picklable ``PoolTask``s with stable ids, the unit
of work and of resume) and ``read_task`` (yields ``PoolItem``s: key, source, bytes or a named
error). Supported pools:

- a folder of image files (recursive, sorted; keys from the relative path, see ``path_keys``);
  a folder holding ``labels.parquet`` with ``key`` and ``file`` columns (a labelled pool such as
  ``python -m curation demo-pool`` writes) uses those keys;
- tar / WebDataset shards: a ``.tar`` file, a folder whose top level holds ``.tar`` files, a glob
  (``shards/*.tar``) or a brace pattern (``x-{000000..000009}.tar``); members are grouped by
  WebDataset key (path up to the first dot of the file name); one task per shard;
- a ``.parquet`` or ``.csv`` list of URLs (column ``url``, optional ``key``); tasks are row ranges
  and the bytes are fetched by ``curation.download``.

Nothing is lost silently: an unreadable file, a broken shard or a failed download becomes a
``PoolItem`` with ``error`` set (``read_error``, ``too_many_bytes``, ``no_image_member``,
``download_*``, and for folder pools the reasons of ``curation.localread``: ``not_regular_file``,
``broken_symlink``, ``outside_pool``, ``read_timeout``, ``missing_file``) and ``detail`` saying
why, so the pipeline counts it under its reason. Folder pools read only regular files inside the
pool root, each with a size cap and a timeout (``ReadConfig``).

Any of these may live on an object store (``s3://bucket/pool``, read through ``shared.storage``):
a folder is then a key prefix, and its files are read with the same size cap.
"""
from __future__ import annotations

import glob as globmod
import hashlib
import os
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from humans.shared import storage
from humans.shared.imageio import MAX_BYTES
from humans.shared.schema import IMAGE_EXTENSIONS, KEY_RE

from .download import DownloadConfig, Downloader
from .localread import ReadConfig, read_local

LABELS_NAME = "labels.parquet"
# File extensions read as images from folders and shards (schema's list plus common aliases).
POOL_IMAGE_EXTENSIONS = tuple(dict.fromkeys(IMAGE_EXTENSIONS + ("jfif", "jpe", "avif", "heic", "ppm", "pgm")))
MAX_KEY_LEN = 120
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass
class PoolItem:
    """One pool entry: ``data`` holds the bytes, or ``error`` names why there are none."""

    key: str
    source: str
    data: bytes | None = None
    error: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        # A file or member name that is not valid UTF-8 comes back from the OS with surrogate
        # escapes, which Arrow cannot store: keep such bytes visible as \xNN escapes instead.
        self.source = utf8_safe(self.source)
        if self.detail is not None:
            self.detail = utf8_safe(self.detail)


def utf8_safe(text: str) -> str:
    """``text`` with undecodable bytes (surrogate escapes from os/tarfile) written as ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class PoolTask:
    """A unit of work: ``kind`` is ``files``, ``tar`` or ``urls``.

    files: ``root`` folder, ``entries`` = ((relative path, key), ...)
    tar:   ``root`` = the shard (path or URL webdataset's gopen can open)
    urls:  ``root`` = the .parquet/.csv list, rows ``start`` .. ``stop`` - 1
    """

    task_id: str
    kind: str
    root: str
    entries: tuple[tuple[str, str], ...] = field(default=())
    start: int = 0
    stop: int = 0

    def __len__(self) -> int:
        if self.kind == "files":
            return len(self.entries)
        if self.kind == "urls":
            return self.stop - self.start
        return 0  # unknown until the shard is read


class PoolSpecError(ValueError):
    """The pool spec names nothing readable; the message says what was expected."""


# -- keys --------------------------------------------------------------------------------------
def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def sanitize_key(raw: str, salt: str | None = None) -> str:
    """A KEY_RE-valid key for ``raw``; if anything had to change, a short hash of ``salt or raw``
    is appended so that different raw names never meet on the same key."""
    base = _BAD_CHARS.sub("_", raw).strip("_") or "item"
    if base == raw and len(base) <= MAX_KEY_LEN:
        return base
    return f"{base[:MAX_KEY_LEN]}-{_short_hash(salt or raw)}"


def path_keys(rel_paths: list[str]) -> list[str]:
    """Keys for files given by relative POSIX paths.

    ``photo_01.jpg`` -> ``photo_01``; ``a/b c.png`` -> ``a_b_c-<hash8>`` (any change to the stem
    adds the hash of the full relative path); stems shared by several files (``x.jpg``, ``x.png``)
    all get the hash too. Deterministic for the same listing.
    """
    stems = [os.path.splitext(p)[0] for p in rel_paths]
    counts = Counter(stems)
    keys = []
    for rel, stem in zip(rel_paths, stems):
        if counts[stem] > 1:
            base = _BAD_CHARS.sub("_", stem).strip("_") or "item"
            keys.append(f"{base[:MAX_KEY_LEN]}-{_short_hash(rel)}")
        else:
            keys.append(sanitize_key(stem, salt=rel))
    dup = [k for k, c in Counter(keys).items() if c > 1]
    if dup:  # only possible with a hash collision; fail loudly rather than merge two items
        raise PoolSpecError(f"key collision for {dup[:3]}")
    return keys


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower().lstrip(".")


# -- planning ----------------------------------------------------------------------------------
def _is_url_list(spec: str) -> bool:
    return spec.lower().endswith((".parquet", ".csv", ".csv.gz"))


def _is_shard_name(name: str) -> bool:
    return name.lower().endswith((".tar", ".tar.gz", ".tgz"))


def _remote_glob(spec: str) -> list[str]:
    import fnmatch

    folder, _, pattern = spec.rpartition("/")
    return [storage.join(folder, n) for n, _ in storage.list_files(folder) if fnmatch.fnmatchcase(n, pattern)]


def _expand_shards(spec: str) -> list[str]:
    if "{" in spec:
        import braceexpand

        shards = list(braceexpand.braceexpand(spec))
    elif any(c in spec for c in "*?["):
        shards = _remote_glob(spec) if storage.is_remote(spec) else sorted(globmod.glob(spec))
    else:
        shards = [spec]
    local = [s for s in shards if ("://" not in s or storage.is_remote(s)) and not s.startswith("pipe:")]
    missing = [s for s in local if not storage.is_file(s)]
    if missing:
        raise PoolSpecError(f"pool {spec!r}: {len(missing)} shard(s) not found, first: {missing[0]}")
    if not shards:
        raise PoolSpecError(f"pool {spec!r}: the pattern matches no shard")
    return shards


def _walk_images(root: Path) -> list[str]:
    rels = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or _ext(name) not in POOL_IMAGE_EXTENSIONS:
                continue
            rels.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(rels)


def _labelled_entries(root: str) -> list[tuple[str, str]] | None:
    path = storage.join(root, LABELS_NAME)
    if not storage.is_file(path):
        return None
    table = storage.read_parquet(path)
    if not {"key", "file"} <= set(table.column_names):
        return None
    keys = table.column("key").to_pylist()
    files = table.column("file").to_pylist()
    outside = [f for f in files if not isinstance(f, str) or os.path.isabs(f) or ".." in Path(f).parts]
    if outside:
        raise PoolSpecError(f"{path}: 'file' must be a path inside {root}, got {outside[:3]}")
    bad = [k for k in keys if not isinstance(k, str) or not KEY_RE.match(k)]
    if bad:
        raise PoolSpecError(f"{path}: invalid keys (must match {KEY_RE.pattern}): {bad[:3]}")
    if len(set(keys)) != len(keys):
        raise PoolSpecError(f"{path}: duplicate keys")
    return sorted(zip(files, keys))


def _remote_images(root: str) -> list[str]:
    return [rel for rel, _ in storage.list_files(root, recursive=True)
            if not any(part.startswith(".") for part in rel.split("/")) and _ext(rel) in POOL_IMAGE_EXTENSIONS]


def _file_tasks(root: str, items_per_task: int) -> list[PoolTask]:
    entries = _labelled_entries(root)
    if entries is None:
        rels = _remote_images(root) if storage.is_remote(root) else _walk_images(Path(root))
        entries = list(zip(rels, path_keys(rels)))
    tasks = []
    for i in range(0, len(entries), items_per_task):
        chunk = tuple(entries[i:i + items_per_task])
        digest = _short_hash("\n".join(f"{r}\t{k}" for r, k in chunk))
        tasks.append(PoolTask(task_id=f"files-{i // items_per_task:06d}-{digest}", kind="files",
                              root=str(root), entries=chunk))
    return tasks


def _count_rows(path: str) -> int:
    if path.lower().endswith(".parquet"):
        return storage.parquet_file(path).metadata.num_rows
    return len(_read_url_rows(path, 0, None))


def _read_url_rows(path: str, start: int, stop: int | None) -> list[tuple[str, str | None]]:
    """(url, key or None) for rows start..stop-1 of a parquet/CSV list."""
    if path.lower().endswith(".parquet"):
        pf = storage.parquet_file(path)
        names = pf.schema_arrow.names
        if "url" not in names:
            raise PoolSpecError(f"{path}: no 'url' column (columns: {names})")
        cols = ["url"] + (["key"] if "key" in names else [])
        meta = pf.metadata
        stop = meta.num_rows if stop is None else min(stop, meta.num_rows)
        # read only the row groups that overlap [start, stop): a task costs O(its rows), not O(list)
        groups, first, offset = [], None, 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if offset < stop and offset + n > start:
                groups.append(g)
                first = offset if first is None else first
            offset += n
        if not groups:
            return []
        table = pf.read_row_groups(groups, columns=cols)
        table = table.slice(start - first, max(0, stop - start))
    else:
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(storage.open_input(path), convert_options=pcsv.ConvertOptions(
            column_types={"url": "string", "key": "string"}, include_missing_columns=False))
        if "url" not in table.column_names:
            raise PoolSpecError(f"{path}: no 'url' column (columns: {table.column_names})")
        if stop is None:
            stop = table.num_rows
        table = table.slice(start, max(0, stop - start))
    urls = table.column("url").to_pylist()
    keys = table.column("key").to_pylist() if "key" in table.column_names else [None] * len(urls)
    return list(zip(urls, keys))


def plan_pool(spec: str, items_per_task: int = 256) -> list[PoolTask]:
    """Split the pool named by ``spec`` into deterministic tasks (same input -> same task ids).

    ``spec``: a folder of images, a labelled pool folder, a ``.tar`` shard / folder of shards /
    glob / brace pattern, or a ``.parquet``/``.csv`` URL list.
    """
    if items_per_task < 1:
        raise ValueError(f"items_per_task must be >= 1, got {items_per_task}")
    spec = str(spec)
    if _is_url_list(spec):
        if not storage.is_file(spec):
            raise PoolSpecError(f"URL list {spec!r} not found")
        n = _count_rows(spec)
        _read_url_rows(spec, 0, 0)  # checks the 'url' column now, not in a worker later
        return [PoolTask(task_id=f"urls-{s:010d}-{min(s + items_per_task, n):010d}", kind="urls",
                         root=storage.resolve(spec), start=s, stop=min(s + items_per_task, n))
                for s in range(0, n, items_per_task)]
    remote = storage.is_remote(spec)
    if (remote and storage.is_dir(spec)) or (not remote and os.path.isdir(spec)):
        root = storage.resolve(spec) if remote else str(Path(spec).resolve())
        top_shards = [storage.join(root, n) for n, _ in storage.list_files(root) if _is_shard_name(n)]
        if top_shards and not storage.is_file(storage.join(root, LABELS_NAME)):
            shards = top_shards
        else:
            tasks = _file_tasks(root, items_per_task)
            if not tasks:
                raise PoolSpecError(f"pool folder {spec!r} holds no image files "
                                    f"(extensions {', '.join(POOL_IMAGE_EXTENSIONS)}) and no .tar shards")
            return tasks
    elif _is_shard_name(spec.split("?")[0]) or "{" in spec or any(c in spec for c in "*?["):
        shards = _expand_shards(spec)
    elif storage.exists(spec) if remote else os.path.exists(spec):
        raise PoolSpecError(f"pool {spec!r} is a file but not a .tar shard or a .parquet/.csv URL list")
    else:
        raise PoolSpecError(f"pool {spec!r} not found (expected a folder, .tar shard(s), or a .parquet/.csv "
                            f"URL list)")
    tasks = []
    for shard in shards:
        name = os.path.basename(shard.split("?")[0])
        stem = re.sub(r"\.(tar|tar\.gz|tgz)$", "", name, flags=re.I)
        full = os.path.abspath(shard) if "://" not in shard and os.path.exists(shard) else shard
        tasks.append(PoolTask(task_id=f"tar-{sanitize_key(stem)}-{_short_hash(full, 6)}", kind="tar", root=full))
    ids = [t.task_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise PoolSpecError(f"pool {spec!r} lists the same shard twice")
    return tasks


# -- reading -----------------------------------------------------------------------------------
def _read_remote(uri: str, read: ReadConfig) -> tuple[bytes | None, str | None, str | None]:
    """(bytes, error, detail) of one object-store file, with the folder pools' size cap."""
    try:
        n = storage.size(uri)
        if n is None:
            return None, "missing_file", f"{uri} does not exist"
        if n > read.max_bytes:
            return None, "too_many_bytes", f"{n} bytes > read.max_bytes={read.max_bytes}"
        return storage.read_bytes(uri), None, None
    except OSError as exc:
        return None, "read_error", str(exc)[:300]


def _read_files(task: PoolTask, read: ReadConfig | None) -> Iterator[PoolItem]:
    read = read or ReadConfig()
    if storage.is_remote(task.root):
        for rel, key in task.entries:
            uri = storage.join(task.root, rel)
            yield PoolItem(key, uri, *_read_remote(uri, read))
        return
    root = Path(task.root)
    for rel, key in task.entries:
        path = root / rel
        res = read_local(root, rel, read)
        yield PoolItem(key, str(path), res.data, res.error, res.detail)


def _wds_split(name: str) -> tuple[str, str]:
    """WebDataset convention: key = directory + file name up to its first dot; rest = extension."""
    directory, base = os.path.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return (f"{directory}/{stem}" if directory else stem), ext.lower()


def _open_shard(shard: str):
    if storage.is_remote(shard):
        return storage.open_input(shard)
    if os.path.exists(shard):
        return open(shard, "rb")
    from webdataset.gopen import gopen  # pipe:..., http(s)://... via curl

    return gopen(shard, "rb")


def _pick_image(members: dict[str, bytes]) -> tuple[str, bytes] | None:
    for ext in POOL_IMAGE_EXTENSIONS:
        if ext in members:
            return ext, members[ext]
    for ext, data in sorted(members.items()):  # e.g. "0.jpg" or "image.png" in multi-part samples
        if _ext("x." + ext) in POOL_IMAGE_EXTENSIONS:
            return ext, data
    return None


def _read_tar(task: PoolTask) -> Iterator[PoolItem]:
    shard = task.root
    raw_key: str | None = None  # WebDataset key of the sample being collected
    key = ""  # its pool key
    members: dict[str, bytes | None] = {}  # extension -> bytes (None: member over MAX_BYTES)
    seen: set[str] = set()

    def flush() -> PoolItem:
        picked = _pick_image({e: (d if d is not None else b"") for e, d in members.items()})
        if picked is None:
            return PoolItem(key, f"tar://{shard}#{raw_key}", None, "no_image_member")
        ext, data = picked
        source = f"tar://{shard}#{raw_key}.{ext}"
        if members.get(ext) is None:
            return PoolItem(key, source, None, "too_many_bytes")
        return PoolItem(key, source, data, None)

    try:
        with _open_shard(shard) as fh, tarfile.open(fileobj=fh, mode="r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                wkey, ext = _wds_split(info.name)
                if not ext or os.path.basename(wkey).startswith("."):
                    continue  # WebDataset skips names without an extension and hidden files
                if wkey != raw_key:
                    if raw_key is not None:
                        yield flush()
                        seen.add(raw_key)
                    raw_key, members = wkey, {}
                    # members of one sample should be adjacent; a key met again gets its own hash
                    key = sanitize_key(wkey) if wkey not in seen \
                        else f"{sanitize_key(wkey)[:MAX_KEY_LEN]}-{_short_hash(shard + '#' + info.name)}"
                if info.size > MAX_BYTES:
                    members[ext] = None
                    continue
                fobj = tar.extractfile(info)
                members[ext] = fobj.read() if fobj is not None else b""
    except (tarfile.TarError, OSError, EOFError, ValueError):
        if raw_key is not None and members:
            yield flush()
        yield PoolItem(sanitize_key(f"{task.task_id}-read-error"), f"tar://{shard}", None, "read_error")
        return
    if raw_key is not None:
        yield flush()


def _read_urls(task: PoolTask, download: DownloadConfig | None) -> Iterator[PoolItem]:
    rows = _read_url_rows(task.root, task.start, task.stop)
    keys = [sanitize_key(str(k)) if k not in (None, "") else f"u{task.start + i:010d}"
            for i, (_, k) in enumerate(rows)]
    urls = [u if isinstance(u, str) else "" for u, _ in rows]
    downloader = Downloader(download)
    for key, url, res in zip(keys, urls, downloader.fetch_many(urls)):
        yield PoolItem(key, url, res.data if res.ok else None, res.error)


def read_task(task: PoolTask, download: DownloadConfig | None = None,
              read: ReadConfig | None = None) -> Iterator[PoolItem]:
    """Yield the task's items in a stable order; failures come back as items with ``error``.

    ``read`` bounds the reading of folder-pool files (size cap, timeout, symlink policy)."""
    if task.kind == "files":
        return _read_files(task, read)
    if task.kind == "tar":
        return _read_tar(task)
    if task.kind == "urls":
        return _read_urls(task, download)
    raise ValueError(f"unknown PoolTask kind {task.kind!r} (allowed: files, tar, urls)")
