"""Sample grids for the report: kept images per shard, rejected examples per reason, duplicate clusters.

Only the images shown are read, and each becomes a small JPEG thumbnail: kept images are streamed
from the first members of a few shards (``tarfile`` in stream mode, stopping early); rejected and
duplicate examples are read from the pool ``source`` recorded in the stage decisions when it is a
readable local file or ``tar://SHARD#MEMBER``; anything else (URLs, moved pools, undecodable bytes)
becomes a tile that says why it has no picture. Headers are checked before decoding so a
decompression bomb in the pool is never expanded.
"""
from __future__ import annotations

import io
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from humans.shared.schema import IMAGE_EXTENSIONS

from .assets import AssetSink
from .layout import RunLayout
from .stats import RunStats

try:  # the project's safe decoder (shared/imageio.py); Pillow alone otherwise
    from humans.shared.imageio import ImageError, decode_rgb, read_header
except ImportError:  # pragma: no cover - only before shared.imageio exists
    ImageError = ValueError  # type: ignore[misc,assignment]
    decode_rgb = read_header = None  # type: ignore[assignment]

THUMB_PX = 128
MAX_SOURCE_BYTES = 64 * 1024 * 1024
_FAST_MODES = {"RGB", "L", "CMYK", "YCbCr"}


@dataclass
class Tile:
    caption: str
    src: str | None = None          # None: show ``note`` instead of a picture
    note: str = ""
    detail: str = ""
    css: str = ""                   # "kept", "rejected", "rep"


@dataclass
class Grid:
    title: str
    tiles: list[Tile] = field(default_factory=list)
    note: str = ""


def thumbnail(data: bytes, source: str = "", size: int = THUMB_PX) -> tuple[bytes, int, int]:
    """A JPEG thumbnail of ``data`` (longest side ``size``) and the image's own width and height.

    Raises ImageError (or ValueError) for bytes that do not decode.
    """
    if read_header is not None:
        hdr = read_header(data, source)
        w, h = hdr.width, hdr.height
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            im = Image.open(io.BytesIO(data))
            if im.mode in _FAST_MODES and getattr(im, "n_frames", 1) == 1:
                im.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a reduced scale
                im = ImageOps.exif_transpose(im).convert("RGB")
            elif decode_rgb is not None:
                im = Image.fromarray(decode_rgb(data, source))
            else:
                im = ImageOps.exif_transpose(im).convert("RGB")
            if read_header is None:
                w, h = im.size
            im.thumbnail((size, size))
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure: no picture for this tile
            raise ValueError(f"{source or '<bytes>'}: cannot decode ({type(exc).__name__}: {exc})") from None
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return buf.getvalue(), int(w), int(h)


def read_source(source: str, base: Path | None = None) -> tuple[bytes | None, str]:
    """Bytes of a pool source (local path or ``tar://SHARD#MEMBER``) or (None, why not)."""
    if not source:
        return None, "no source recorded"
    if "://" in source and not source.startswith(("tar://", "file://")):
        return None, "remote source, not fetched"
    try:
        if source.startswith("tar://"):
            path, _, member = source[len("tar://"):].partition("#")
            p = Path(path)
            if not p.is_absolute() and base is not None and not p.exists():
                p = base / p
            with tarfile.open(p, "r:*") as tf:
                info = tf.getmember(member)
                if info.size > MAX_SOURCE_BYTES:
                    return None, f"{info.size} bytes: too large to preview"
                fh = tf.extractfile(info)
                return (fh.read() if fh else None), ("" if fh else "not a file in the tar")
        p = Path(source[len("file://"):] if source.startswith("file://") else source)
        if not p.is_absolute() and base is not None and not p.exists():
            p = base / p
        size = p.stat().st_size
        if size > MAX_SOURCE_BYTES:
            return None, f"{size} bytes: too large to preview"
        return p.read_bytes(), ""
    except (OSError, KeyError, tarfile.TarError) as exc:
        return None, f"source not readable ({type(exc).__name__})"


def _tile_from_bytes(sink: AssetSink, name: str, data: bytes | None, why: str, caption: str,
                     detail: str = "", css: str = "") -> Tile:
    if data is None:
        return Tile(caption, None, why, detail, css)
    try:
        jpg, w, h = thumbnail(data, caption)
    except (ImageError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or "cannot decode"
        return Tile(caption, None, f"no preview: {reason}", detail, css)
    return Tile(caption, sink.add(name, jpg, "image/jpeg"), "", f"{w}\u00d7{h}" + (f" · {detail}" if detail else ""), css)


def kept_grids(layout: RunLayout, sink: AssetSink, per_shard: int = 8, max_shards: int = 12) -> tuple[list[Grid], str]:
    """The first ``per_shard`` images of up to ``max_shards`` shards (evenly spread over the run)."""
    shards = layout.shards
    note = ""
    if not shards:
        return [], "no shards on disk: nothing kept to show"
    if len(shards) > max_shards:
        step = (len(shards) - 1) / (max_shards - 1)
        shards = [shards[round(i * step)] for i in range(max_shards)]
        note = f"showing {max_shards} of {len(layout.shards)} shards, evenly spread"
    grids = []
    for shard in shards:
        g = Grid(shard.name)
        try:
            with tarfile.open(shard, "r|") as tf:
                for m in tf:
                    if len(g.tiles) >= per_shard:
                        break
                    key, _, ext = m.name.partition(".")
                    if not m.isfile() or ext.lower() not in IMAGE_EXTENSIONS:
                        continue
                    fh = tf.extractfile(m)
                    data = fh.read() if fh else None
                    g.tiles.append(_tile_from_bytes(sink, f"kept_{shard.stem}_{key}", data, "unreadable", key,
                                                    css="kept"))
        except (tarfile.TarError, OSError, EOFError) as exc:
            g.note = f"shard unreadable ({type(exc).__name__}: {exc}); run `python -m curation verify`"
        grids.append(g)
    return grids, note


def _skipped_note(skipped: list[tuple[str, str]]) -> str:
    """One line naming the examples whose source could not be read (they get no tile)."""
    if not skipped:
        return ""
    whys = sorted({w for _, w in skipped})
    keys = ", ".join(k for k, _ in skipped[:8]) + (" …" if len(skipped) > 8 else "")
    return f"{len(skipped)} example(s) not shown, {'; '.join(whys)}: {keys}"


def rejected_grids(stats: RunStats, sink: AssetSink, base: Path | None = None) -> list[Grid]:
    """Examples of every rejection reason of every stage, read from their pool sources.

    A source that cannot be read (moved, remote, not recorded) gets no tile, only a mention in the
    grid's note; bytes that do not decode get a tile saying why.
    """
    grids = []
    for st in stats.stages:
        for reason, examples in sorted(st.examples.items(), key=lambda kv: -st.reasons.get(kv[0], 0)):
            g = Grid(f"{st.dir_name} · {reason} ({st.reasons.get(reason, 0):,} images)")
            skipped: list[tuple[str, str]] = []
            for ex in examples:
                data, why = read_source(ex["source"], base)
                if data is None:
                    skipped.append((ex["key"], why))
                    continue
                g.tiles.append(_tile_from_bytes(sink, f"rej_{st.dir_name}_{ex['key']}", data, why, ex["key"],
                                                css="rejected"))
            g.note = _skipped_note(skipped)
            grids.append(g)
    return grids


def duplicate_grids(stats: RunStats, sink: AssetSink, base: Path | None = None) -> list[Grid]:
    """One row per example duplicate cluster: the kept representative first, then what it replaced."""
    grids = []
    for st in stats.stages:
        for group in st.chosen_groups:
            members = sorted(st.group_members.get(group, []),
                             key=lambda m: (not m["representative"], not m["kept"], m["key"]))
            if len(members) < 2:
                continue
            g = Grid(f"{st.dir_name} · cluster of {group}")
            skipped: list[tuple[str, str]] = []
            for m in members:
                data, why = read_source(m["source"], base)
                label = "kept" if m["kept"] else "duplicate"
                if data is None:
                    skipped.append((f"{m['key']} ({label})", why))
                    continue
                g.tiles.append(_tile_from_bytes(sink, f"dup_{st.dir_name}_{m['key']}", data, why, m["key"],
                                                detail=label, css="rep" if m["kept"] else "rejected"))
            g.note = _skipped_note(skipped)
            grids.append(g)
    return grids
