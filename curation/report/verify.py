"""Verify curated shards against ``manifest.json`` and ``index.parquet`` before anyone trains on them.

Per shard (in parallel worker processes when ``workers > 1``):
  * the file exists, its size and sha256 equal the manifest's;
  * the tar reads to the end with Python's ``tarfile`` (a truncated or damaged tar is named);
  * every sample has one image and one ``.json``; the json parses and validates as
    ``shared.schema.SampleMeta`` with its own key; the image decodes (``shared.imageio.decode_rgb``,
    which refuses truncated files) and its sha256 equals the one in the json and in the index;
  * the sample count and the digest of the sorted keys equal the manifest's; no key twice.
Across shards:
  * no key in two shards; no shard file missing from (or extra to) the manifest;
  * every index row names a sample present in its shard ("missing sample"), every sample in a shard
    has its index row.

Every problem is one ``Problem(shard, key, check, message)``; the CLI prints them all and exits 1.
Memory: one member's bytes at a time per worker, plus the set of keys (tens of bytes per sample).
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq
from pydantic import ValidationError

from humans.shared.log import progress
from humans.shared.schema import IMAGE_EXTENSIONS, INDEX_NAME, MANIFEST_NAME, SampleMeta
from humans.shared.shards import file_sha256, keys_digest

from .layout import resolve_run

try:
    from humans.shared.imageio import ImageError, decode_rgb
except ImportError:  # pragma: no cover - only before shared.imageio exists
    ImageError = None  # type: ignore[assignment]
    decode_rgb = None  # type: ignore[assignment]


@dataclass
class Problem:
    shard: str
    key: str
    check: str
    message: str

    def __str__(self) -> str:
        where = self.shard + (f" key={self.key}" if self.key else "")
        return f"{where}: [{self.check}] {self.message}"


@dataclass
class ShardResult:
    name: str
    keys: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    images_decoded: int = 0


def _decode_problem(data: bytes, name: str) -> str | None:
    """None when ``data`` decodes as an image, else why not."""
    if decode_rgb is not None:
        try:
            decode_rgb(data, name)
            return None
        except ImageError as exc:  # type: ignore[misc]
            return f"image does not decode ({exc.reason}): {exc}"
    import io

    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"image does not decode: {type(exc).__name__}: {exc}"


def _members(path: Path, res: ShardResult) -> Iterator[tuple[str, str, bytes]]:
    """(key, ext, bytes) of every file member; a read failure becomes a ``tar`` problem."""
    last = None
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, dot, ext = m.name.partition(".")
                fh = tf.extractfile(m)
                data = fh.read() if fh is not None else b""
                if len(data) != m.size:
                    raise tarfile.ReadError(f"member {m.name} has {len(data)} of {m.size} bytes")
                last = m.name
                yield key, ext if dot else "", data
    except (tarfile.TarError, EOFError, OSError) as exc:
        after = f"after member {last}" if last else "before the first member"
        res.problems.append(Problem(path.name, "", "tar",
                                    f"tar cannot be read to the end ({type(exc).__name__}: {exc}) {after}: "
                                    "the shard is truncated or damaged"))


def verify_shard(path: str, entry: dict[str, Any] | None, index_rows: dict[str, str] | None,
                 decode: bool = True) -> ShardResult:
    """Check one shard file (see module docstring). ``index_rows``: key -> image_sha256 of its index rows."""
    p = Path(path)
    res = ShardResult(p.name)
    if not p.is_file():
        res.problems.append(Problem(p.name, "", "missing_shard", "listed in manifest.json but the file is absent"))
        return res
    if entry is not None:
        size = p.stat().st_size
        if entry.get("bytes") is not None and size != entry["bytes"]:
            res.problems.append(Problem(p.name, "", "size",
                                        f"file has {size} bytes but manifest.json says {entry['bytes']}"))
        sha = file_sha256(p)
        if entry.get("sha256") and sha != entry["sha256"]:
            res.problems.append(Problem(p.name, "", "sha256",
                                        f"sha256 of the file is {sha[:16]}… but manifest.json says "
                                        f"{str(entry['sha256'])[:16]}…: the shard changed after it was written"))
    samples: dict[str, dict[str, Any]] = {}
    order: list[str] = []

    def close_sample(key: str) -> None:
        s = samples.pop(key)
        images = [e for e in s["exts"] if e.lower() in IMAGE_EXTENSIONS]
        meta = None
        if "json" not in s["exts"]:
            res.problems.append(Problem(p.name, key, "json", "sample has no .json metadata"))
        elif s.get("json_error"):
            res.problems.append(Problem(p.name, key, "json", s["json_error"]))
        else:
            meta = s["meta"]
        if not images:
            res.problems.append(Problem(p.name, key, "image", f"sample has no image (members: {sorted(s['exts'])})"))
        elif len(images) > 1:
            res.problems.append(Problem(p.name, key, "image", f"sample has {len(images)} images: {images}"))
        sha = s.get("sha")
        if meta is not None and sha is not None and meta.image_sha256 != sha:
            res.problems.append(Problem(p.name, key, "image_sha256",
                                        f"image bytes hash to {sha[:16]}… but {key}.json says "
                                        f"{meta.image_sha256[:16]}…"))
        if index_rows is not None and key in index_rows and sha is not None and index_rows[key] \
                and index_rows[key] != sha:
            res.problems.append(Problem(p.name, key, "image_sha256",
                                        f"image bytes hash to {sha[:16]}… but index.parquet says "
                                        f"{index_rows[key][:16]}…"))

    seen_exts: dict[str, set[str]] = defaultdict(set)
    for key, ext, data in _members(p, res):
        if key in seen_exts and key not in samples:
            res.problems.append(Problem(p.name, key, "duplicate_key",
                                        f"key appears twice in this shard (again as .{ext}, not next to its "
                                        "first members)"))
        if ext in seen_exts[key]:
            res.problems.append(Problem(p.name, key, "duplicate_key", f"member {key}.{ext} appears twice"))
            continue
        seen_exts[key].add(ext)
        if key not in samples:
            # WebDataset groups consecutive members by key: a new key closes the previous sample
            for k in list(samples):
                close_sample(k)
            samples[key] = {"exts": set()}
            order.append(key)
        s = samples[key]
        s["exts"].add(ext)
        if ext == "json":
            try:
                doc = json.loads(data)
                meta = SampleMeta.model_validate(doc)
                if meta.key != key:
                    s["json_error"] = f"{key}.json names key {meta.key!r}"
                s["meta"] = meta
            except ValueError as exc:
                first = str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else \
                    "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
                s["json_error"] = f"{key}.json does not parse as sample metadata: {first}"
        elif ext.lower() in IMAGE_EXTENSIONS:
            s["sha"] = hashlib.sha256(data).hexdigest()
            if decode:
                why = _decode_problem(data, f"{p.name}:{key}.{ext}")
                res.images_decoded += 1
                if why:
                    res.problems.append(Problem(p.name, key, "decode", why))
    for k in list(samples):
        close_sample(k)
    res.keys = order
    if entry is not None:
        if entry.get("samples") is not None and len(order) != entry["samples"]:
            res.problems.append(Problem(p.name, "", "sample_count",
                                        f"shard holds {len(order)} samples but manifest.json says {entry['samples']}"))
        if entry.get("keys_sha256") and keys_digest(order) != entry["keys_sha256"]:
            res.problems.append(Problem(p.name, "", "keys",
                                        "the set of sample keys differs from the one recorded in manifest.json"))
    if index_rows is not None:
        have = set(order)
        for key in sorted(set(index_rows) - have):
            res.problems.append(Problem(p.name, key, "missing_sample",
                                        "listed in index.parquet for this shard but not in the shard"))
        for key in sorted(have - set(index_rows)):
            res.problems.append(Problem(p.name, key, "not_in_index", "in the shard but has no row in index.parquet"))
    return res


def _index_by_shard(index: Path, problems: list[Problem]) -> dict[str, dict[str, str]]:
    """key -> image_sha256 per shard, read column-wise; duplicate index rows are problems."""
    by_shard: dict[str, dict[str, str]] = defaultdict(dict)
    try:
        pf = pq.ParquetFile(index)
    except Exception as exc:  # noqa: BLE001
        problems.append(Problem(INDEX_NAME, "", "index", f"cannot read {index}: {exc}"))
        return {}
    cols = [c for c in ("key", "shard", "image_sha256") if c in pf.schema_arrow.names]
    if "key" not in cols or "shard" not in cols:
        problems.append(Problem(INDEX_NAME, "", "index", f"{index} lacks the key/shard columns (has {cols})"))
        return {}
    for batch in pf.iter_batches(batch_size=65536, columns=cols):
        d = batch.to_pydict()
        shas = d.get("image_sha256") or [""] * batch.num_rows
        for key, shard, sha in zip(d["key"], d["shard"], shas):
            name = Path(str(shard)).name
            if key in by_shard[name]:
                problems.append(Problem(name, key, "duplicate_key", "index.parquet has two rows for this key"))
            by_shard[name][key] = sha or ""
    return by_shard


def verify_run(path: str | Path, workers: int = 1, decode: bool = True) -> tuple[list[Problem], dict[str, Any]]:
    """Verify every shard under ``path``; returns (problems, summary)."""
    layout = resolve_run(path)
    problems: list[Problem] = []
    manifest = None
    if layout.manifest is None:
        problems.append(Problem(MANIFEST_NAME, "", "manifest",
                                f"no {MANIFEST_NAME} in {layout.root}: sizes, checksums and counts cannot be checked"))
    else:
        try:
            manifest = layout.manifest_doc()
        except ValueError as exc:
            problems.append(Problem(MANIFEST_NAME, "", "manifest", str(exc)))
    entries: dict[str, dict] = {}
    for e in (manifest or {}).get("shards", []):
        if e.get("name") in entries:
            problems.append(Problem(e["name"], "", "manifest", "listed twice in manifest.json"))
        entries[e.get("name")] = e
    on_disk = {p.name: p for p in layout.shards}
    if manifest is not None:
        for name in sorted(set(on_disk) - set(entries)):
            problems.append(Problem(name, "", "unlisted_shard", "shard file is not listed in manifest.json"))
        total = manifest.get("total_samples")
        listed = sum(int(e.get("samples") or 0) for e in entries.values())
        if total is not None and total != listed:
            problems.append(Problem(MANIFEST_NAME, "", "manifest",
                                    f"total_samples is {total} but the shard entries add up to {listed}"))
    index = _index_by_shard(layout.index, problems) if layout.index is not None else None
    names = sorted(set(on_disk) | set(entries))
    if index is not None:
        for name in sorted(set(index) - set(names)):
            for key in sorted(index[name])[:20]:
                problems.append(Problem(name, key, "missing_sample",
                                        "listed in index.parquet but its shard does not exist"))
    jobs = [(str(on_disk.get(n, layout.root / n)), entries.get(n) if manifest is not None else None,
             (index.get(n, {}) if index is not None else None), decode) for n in names]
    results: list[ShardResult] = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(verify_shard, *j) for j in jobs]
            results = [f.result() for f in progress(futs, desc="verify", total=len(futs), unit="shard")]
    else:
        results = [verify_shard(*j) for j in progress(jobs, desc="verify", total=len(jobs), unit="shard")]
    first_shard: dict[str, str] = {}
    for r in results:
        problems.extend(r.problems)
        for key in r.keys:
            if key in first_shard and first_shard[key] != r.name:
                problems.append(Problem(r.name, key, "duplicate_key",
                                        f"key also appears in shard {first_shard[key]}: keys must be unique "
                                        "across shards"))
            else:
                first_shard.setdefault(key, r.name)
    summary = {"shards": len(names), "samples": sum(len(r.keys) for r in results),
               "images_decoded": sum(r.images_decoded for r in results), "problems": len(problems),
               "index": layout.index is not None, "manifest": layout.manifest is not None}
    return problems, summary


def problems_json(problems: list[Problem], summary: dict[str, Any]) -> str:
    return json.dumps({"summary": summary, "problems": [asdict(p) for p in problems]}, indent=2)
