"""The labelled demo pool: an offline, deterministic web pool whose every item carries its ground truth.

``make_demo_pool(out_dir, scale="small"|"demo", seed=0)`` writes ``out_dir/images/KEY.EXT`` and
``out_dir/labels.parquet`` (``LABEL_COLUMNS``). People come from real photographs that installed
packages ship (scikit-image astronaut / camera, matplotlib's Grace Hopper, ultralytics' bus and
zidane; see ``curation.pool.assets``): the whole photos, and crops of their people composited at
varied sizes, positions and mirrorings onto varied person-free backgrounds (real scenes and
procedural ones). Distinct kept images are checked to be far apart in pHash (Hamming > 10 of 64
bits). Every rejection category of the pipeline is present (``CATEGORIES``), with the stage that
should reject it (``EXPECTED_STAGE``), so each stage's precision and recall can be scored.

Everything derives from ``seed`` through per-item ``numpy`` generators, so the same call writes the
same bytes; categories are independent streams (changing one count does not change other items).
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from humans.shared.atomic import AtomicFile
from humans.shared.imageio import decode_rgb, encode_jpeg, encode_png
from humans.shared.log import get_logger, progress

from .pool import assets, compose, damage

log = get_logger("curation.demo_pool")

LABEL_COLUMNS = ("key", "file", "category", "has_person", "n_persons", "expected_reject_stage", "dup_group",
                 "dup_of", "notes")

# category -> the stage that should reject it ("" = kept)
EXPECTED_STAGE: dict[str, str] = {
    "person": "", "no_person": "person", "low_res": "resolution", "bad_aspect": "resolution",
    "blurred": "quality", "overexposed": "quality", "underexposed": "quality", "low_information": "quality",
    "heavy_compression": "quality", "small_person": "framing", "truncated_person": "framing",
    "exact_dup": "phash", "near_dup": "phash", "corrupt": "decode", "truncated_file": "decode",
    "empty_file": "decode", "decompression_bomb": "decode", "cmyk": "", "sixteen_bit": "", "palette": "",
    "exif_rotated": "",
}
CATEGORIES = tuple(EXPECTED_STAGE)
KEPT_CATEGORIES = tuple(c for c, s in EXPECTED_STAGE.items() if s == "")

SCALES: dict[str, dict[str, int]] = {
    "small": {"person": 34, "no_person": 16, "low_res": 4, "bad_aspect": 3, "blurred": 4, "overexposed": 3,
              "underexposed": 3, "low_information": 3, "heavy_compression": 4, "small_person": 4,
              "truncated_person": 4, "exact_dup": 4, "near_dup": 8, "corrupt": 2, "truncated_file": 2,
              "empty_file": 1, "decompression_bomb": 1, "cmyk": 2, "sixteen_bit": 2, "palette": 2,
              "exif_rotated": 2},
    "demo": {"person": 150, "no_person": 70, "low_res": 16, "bad_aspect": 12, "blurred": 16, "overexposed": 12,
             "underexposed": 12, "low_information": 12, "heavy_compression": 16, "small_person": 16,
             "truncated_person": 16, "exact_dup": 16, "near_dup": 40, "corrupt": 6, "truncated_file": 6,
             "empty_file": 3, "decompression_bomb": 2, "cmyk": 8, "sixteen_bit": 8, "palette": 8,
             "exif_rotated": 8},
}
# kept images differ from each other by more than 10 of 64 pHash bits; generated with a margin of 3
# bits so that encoding (JPEG q85+, palette, CMYK) cannot bring two of them within 10
MIN_DISTINCT_PHASH = 14
NEAR_DUP_PHASH = 8  # near duplicates within this distance are for the phash stage, beyond it embedding
# the first four usually stay within pHash reach; the last three (a reframed crop, a letterbox, a small
# rotation) usually do not: they are the embedding stage's labelled near duplicates
NEAR_DUP_KINDS = ("reencode", "resize", "crop", "colour", "reframe", "letterbox", "rotate")
ONE_PERSON_PATCHES = tuple(p.name for p in assets.PERSON_PATCHES if p.n_persons == 1)
# whole photos are stored at this scale (zidane.jpg carries 8x8 JPEG blocking at its own size)
PHOTO_SCALE = {"zidane": 0.75}


@dataclass
class Item:
    key: str
    ext: str
    data: bytes
    category: str
    has_person: bool
    n_persons: int
    notes: str
    expected: str | None = None  # overrides EXPECTED_STAGE[category]
    dup_group: str = ""
    dup_of: str = ""


@dataclass
class _Kept:
    """Distinct kept images so far: keys and pHashes."""

    keys: list[str] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)

    def distance(self, bits: np.ndarray) -> int:
        if not self.hashes:
            return 64
        return int((np.stack(self.hashes) != bits[None]).sum(axis=1).min())


def phash_bits(rgb: np.ndarray) -> np.ndarray:
    """64-bit pHash (imagehash, hash_size 8) as a bool vector."""
    return imagehash.phash(Image.fromarray(rgb)).hash.reshape(-1)


def _rng(seed: int, category: str, index: int) -> np.random.Generator:
    cat = int(hashlib.sha1(category.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(np.random.SeedSequence([seed, cat, index]))


def _encode_good(rgb: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str, str]:
    r = rng.random()
    if r < 0.8:
        q = int(rng.integers(85, 96))
        return encode_jpeg(rgb, q), "jpg", f"jpeg q{q}"
    if r < 0.94:
        return encode_png(rgb, compress_level=1), "png", "png"
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=90, method=0)
    return buf.getvalue(), "webp", "webp q90"


def _describe(info: dict) -> str:
    up = f" upscaled x{info['scale']:.2f}" if info["scale"] > 1.0 else ""
    return (f"{info['patch']} ({info['source']}) on {info['background']}, person box {info['box']} "
            f"height {info['height_frac']:.2f}{' mirrored' if info['flip'] else ''}{up}")


class _Builder:
    def __init__(self, seed: int, counts: dict[str, int]):
        self.seed = seed
        self.counts = counts
        self.items: list[Item] = []
        self.kept = _Kept()

    # -- helpers -------------------------------------------------------------------------------
    def add(self, item: Item) -> Item:
        self.items.append(item)
        return item

    def distinct_person(self, category: str, index: int, max_tries: int = 30,
                        **kw) -> tuple[np.ndarray, dict, np.random.Generator]:
        """A composite far (pHash) from every kept image so far (``kw`` go to compose_person)."""
        rng = _rng(self.seed, category, index)
        for _ in range(max_tries):
            rgb, info = compose.compose_person(rng, **kw)
            bits = phash_bits(rgb)
            if self.kept.distance(bits) >= MIN_DISTINCT_PHASH:
                info["phash"] = bits
                return rgb, info, rng
        raise RuntimeError(f"could not make a distinct person image for {category} #{index}")

    def remember(self, key: str, bits: np.ndarray) -> None:
        self.kept.keys.append(key)
        self.kept.hashes.append(bits)

    # -- categories ----------------------------------------------------------------------------
    def people(self) -> None:
        n = self.counts["person"]
        # the whole photos first (and their mirror images when distinct enough)
        photos = [(name, n_p, False) for name, n_p in assets.PERSON_PHOTOS]
        photos += [(name, n_p, True) for name, n_p in assets.PERSON_PHOTOS]
        i = 0
        for name, n_p, flip in photos:
            if i >= n:
                break
            rgb = np.array(assets.photo(name)[:, ::-1] if flip else assets.photo(name))
            if name in PHOTO_SCALE:
                f = PHOTO_SCALE[name]
                rgb = compose.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)))
            bits = phash_bits(rgb)
            if self.kept.distance(bits) < MIN_DISTINCT_PHASH:
                continue
            rng = _rng(self.seed, "person-photo", i)
            data, ext, enc = _encode_good(rgb, rng)
            key = f"person_{i:04d}"
            scaled = f" resized x{PHOTO_SCALE[name]}" if name in PHOTO_SCALE else ""
            self.add(Item(key, ext, data, "person", True, n_p,
                          f"original photo {name}{' mirrored' if flip else ''}{scaled}, {enc}"))
            self.remember(key, bits)
            i += 1
        for j in range(i, n):
            rgb, info, rng = self.distinct_person("person", j)
            data, ext, enc = _encode_good(rgb, rng)
            key = f"person_{j:04d}"
            self.add(Item(key, ext, data, "person", True, info["n_persons"], f"{_describe(info)}, {enc}"))
            self.remember(key, info["phash"])

    def odd_modes(self) -> None:
        for cat in ("cmyk", "sixteen_bit", "palette", "exif_rotated"):
            for i in range(self.counts[cat]):
                # one clearly visible person: odd modes test decoding, not detection
                rgb, info, rng = self.distinct_person(cat, i, height_frac=(0.75, 0.94), patches=ONE_PERSON_PATCHES)
                key = f"{cat}_{i:04d}"
                if cat == "cmyk":
                    data, ext, how = damage.cmyk_jpeg(rgb), "jpg", "CMYK JPEG"
                elif cat == "sixteen_bit":
                    data, ext, how = damage.sixteen_bit_png(rgb, rng), "png", "16-bit grey PNG (I;16)"
                elif cat == "palette":
                    border = int(rng.integers(0, 2)) * 6
                    data, ext = damage.palette_png(rgb, transparent_border=border), "png"
                    how = "palette PNG" + (f" with a {border}px transparent border" if border else "")
                else:
                    orient = int(rng.choice([6, 8, 3]))
                    data, ext, how = damage.exif_rotated_jpeg(rgb, orient), "jpg", f"EXIF orientation {orient}"
                self.add(Item(key, ext, data, cat, True, info["n_persons"], f"{how}; {_describe(info)}"))
                self.remember(key, info["phash"])

    def no_person(self) -> None:
        for i in range(self.counts["no_person"]):
            rng = _rng(self.seed, "no_person", i)
            size = compose.CANVASES[int(rng.integers(len(compose.CANVASES)))]
            if i % 2 == 0:
                name = assets.SCENE_NAMES[(i // 2) % len(assets.SCENE_NAMES)]
                rgb, what = compose.scene_crop(rng, size, name)
                what = f"crop of skimage {what}"
            else:
                kinds = ("landscape", "shapes", "stripes", "noise", "gradient")
                rgb, what = compose.procedural_scene(rng, size, kinds[(i // 2) % len(kinds)])
                what = f"procedural {what}"
            data, ext, enc = _encode_good(rgb, rng)
            self.add(Item(f"no_person_{i:04d}", ext, data, "no_person", False, 0, f"{what}, {enc}"))

    def resolution_rejects(self) -> None:
        faces = assets.lfw_faces()[:100]  # the first 100 of lfw_subset are faces
        for i in range(self.counts["low_res"]):
            rng = _rng(self.seed, "low_res", i)
            if i % 2 == 0:
                face = faces[int(rng.integers(len(faces)))]
                side = int(rng.choice([25, 50, 64]))
                rgb = compose.resize(np.repeat(face[..., None], 3, axis=2), (side, side))
                note = f"skimage lfw_subset face {side}x{side}"
                n_p = 1
            else:
                big, info = compose.compose_person(rng)
                s = rng.uniform(160, 240) / min(big.shape[:2])
                rgb = compose.resize(big, (int(big.shape[1] * s), int(big.shape[0] * s)))
                note = f"{_describe(info)}, downscaled to {rgb.shape[1]}x{rgb.shape[0]}"
                n_p = info["n_persons"]
            data, ext, enc = _encode_good(rgb, rng)
            self.add(Item(f"low_res_{i:04d}", ext, data, "low_res", True, n_p, f"{note}, {enc}"))
        for i in range(self.counts["bad_aspect"]):
            rng = _rng(self.seed, "bad_aspect", i)
            size = [(1536, 512), (512, 1472), (1600, 560), (544, 1600)][i % 4]
            rgb, info = compose.compose_person(rng, size=size, height_frac=(0.7, 0.9))
            data, ext, enc = _encode_good(rgb, rng)
            self.add(Item(f"bad_aspect_{i:04d}", ext, data, "bad_aspect", True, info["n_persons"],
                          f"aspect {max(size) / min(size):.2f}; {_describe(info)}, {enc}"))

    def quality_rejects(self) -> None:
        for cat in ("blurred", "overexposed", "underexposed", "heavy_compression"):
            for i in range(self.counts[cat]):
                rng = _rng(self.seed, cat, i)
                rgb, info = compose.compose_person(rng)
                if cat == "blurred":
                    radius = float(rng.uniform(5.0, 9.0))
                    out, how = damage.blur(rgb, radius), f"Gaussian blur radius {radius:.1f}"
                elif cat == "overexposed":
                    gain, off = float(rng.uniform(1.8, 2.4)), float(rng.uniform(90, 130))
                    out, how = damage.overexpose(rgb, gain, off), f"overexposed x{gain:.2f}+{off:.0f}"
                elif cat == "underexposed":
                    gain = float(rng.uniform(0.05, 0.1))
                    out, how = damage.underexpose(rgb, gain), f"underexposed x{gain:.2f}"
                else:
                    q = int(rng.integers(3, 9))
                    data = damage.heavy_jpeg(rgb, q)
                    self.add(Item(f"{cat}_{i:04d}", "jpg", data, cat, True, info["n_persons"],
                                  f"JPEG quality {q}; {_describe(info)}"))
                    continue
                data, ext, enc = _encode_good(out, rng)
                self.add(Item(f"{cat}_{i:04d}", ext, data, cat, True, info["n_persons"],
                              f"{how}; {_describe(info)}, {enc}"))
        for i in range(self.counts["low_information"]):
            rng = _rng(self.seed, "low_information", i)
            size = compose.CANVASES[int(rng.integers(len(compose.CANVASES)))]
            rgb = damage.flat_frame(rng, size)
            data, ext, enc = _encode_good(rgb, rng)
            self.add(Item(f"low_information_{i:04d}", ext, data, "low_information", False, 0,
                          f"flat frame, colour {rgb[0, 0].tolist()} with faint noise, {enc}"))

    def framing_rejects(self) -> None:
        for i in range(self.counts["small_person"]):
            rng = _rng(self.seed, "small_person", i)
            size = [(1280, 960), (1440, 1080), (1600, 1200), (1080, 1440)][i % 4]
            rgb, info = compose.compose_person(rng, size=size, height_frac=(0.15, 0.21), patches=ONE_PERSON_PATCHES)
            data, ext, enc = _encode_good(rgb, rng)
            self.add(Item(f"small_person_{i:04d}", ext, data, "small_person", True, info["n_persons"],
                          f"{_describe(info)}, {enc}"))
        full_body = [p for p in assets.PERSON_PATCHES if p.full_body and p.n_persons == 1]
        for i in range(self.counts["truncated_person"]):
            rng = _rng(self.seed, "truncated_person", i)
            patch_def = full_body[i % len(full_body)]
            patch = assets.patch_pixels(patch_def.name)
            size = compose.CANVASES[int(rng.integers(len(compose.CANVASES)))]
            w, h = size
            canvas, bg = compose.background(rng, size)
            height = int(h * rng.uniform(1.9, 2.3))  # head to waist in the frame, the rest below it
            nw = int(round(patch.shape[1] * height / patch.shape[0]))
            side = "left" if rng.random() < 0.5 else "right"
            cut = rng.uniform(0.40, 0.50)  # share of the patch width outside the frame (through the body)
            x = -int(nw * cut) if side == "left" else w - int(nw * (1 - cut))
            y = -int(height * 0.03)  # crown at the top edge (patch margin ~3 %), legs below the bottom
            place = compose.paste_person(canvas, patch, height, x, y, flip=bool(rng.random() < 0.5))
            data, ext, enc = _encode_good(canvas, rng)
            self.add(Item(f"truncated_person_{i:04d}", ext, data, "truncated_person", True, 1,
                          f"{patch_def.name} ({patch_def.source}) scaled x{place.scale:.2f}, cut by the top, "
                          f"bottom and {side} borders ({cut:.0%} of the width outside) on {bg}, {enc}"))

    def duplicates(self) -> None:
        originals = [it for it in self.items if it.category == "person"]
        groups: dict[str, str] = {}

        def group_of(orig: Item) -> str:
            if orig.key not in groups:
                groups[orig.key] = f"g{len(groups):04d}"
                orig.dup_group = groups[orig.key]
            return groups[orig.key]

        for i in range(self.counts["exact_dup"]):
            rng = _rng(self.seed, "exact_dup", i)
            orig = originals[int(rng.integers(len(originals)))]
            g = group_of(orig)
            self.add(Item(f"{orig.key}_copy{i:02d}", orig.ext, orig.data, "exact_dup", orig.has_person,
                          orig.n_persons, f"byte-identical copy of {orig.key}", dup_group=g, dup_of=orig.key))
        for i in range(self.counts["near_dup"]):
            rng = _rng(self.seed, "near_dup", i)
            orig = originals[int(rng.integers(len(originals)))]
            src = decode_rgb(orig.data, orig.key)  # copies are made from the published file
            kind = NEAR_DUP_KINDS[i % len(NEAR_DUP_KINDS)]
            h, w = src.shape[:2]
            if kind == "reencode":
                q = int(rng.integers(60, 80))
                data, ext, how = encode_jpeg(src, q), "jpg", f"re-encoded as JPEG q{q}"
            else:
                if kind == "resize":
                    s = float(rng.uniform(0.72, 0.9))
                    out = compose.resize(src, (int(w * s), int(h * s)))
                    how = f"resized x{s:.2f}"
                elif kind == "crop":
                    f = float(rng.uniform(0.02, 0.05))
                    dx, dy = int(w * f), int(h * f)
                    out = np.ascontiguousarray(src[dy:h - dy, dx:w - dx])
                    how = f"cropped {f:.0%} from each side"
                elif kind == "reframe":  # cropped harder on two sides, scaled back to the original size
                    fx, fy = rng.uniform(0.08, 0.14, 2)
                    x0 = int(w * fx) if rng.random() < 0.5 else 0
                    y0 = int(h * fy) if rng.random() < 0.5 else 0
                    sub = src[y0:y0 + h - int(h * fy), x0:x0 + w - int(w * fx)]
                    out = compose.resize(np.ascontiguousarray(sub), (w, h))
                    how = f"reframed ({fx:.0%} of the width and {fy:.0%} of the height cut), scaled back"
                elif kind == "letterbox":  # bars added above and below, as a re-poster's template does
                    bar = int(h * rng.uniform(0.08, 0.14))
                    shade = int(rng.integers(0, 40)) if rng.random() < 0.7 else int(rng.integers(215, 256))
                    out = np.full((h + 2 * bar, w, 3), shade, np.uint8)
                    out[bar:bar + h] = src
                    how = f"letterboxed ({bar} px bars of grey {shade})"
                elif kind == "rotate":  # a small rotation, cropped to the rotated frame's interior
                    angle = float(rng.uniform(3, 6)) * (1 if rng.random() < 0.5 else -1)
                    rot = np.asarray(Image.fromarray(src).rotate(angle, resample=Image.BICUBIC))
                    m = int(np.ceil(max(h, w) * np.sin(np.radians(abs(angle))))) + 2
                    out = np.ascontiguousarray(rot[m:h - m, m:w - m])
                    how = f"rotated {angle:+.1f} deg and cropped to its interior"
                else:
                    gains = rng.uniform(0.88, 1.12, 3)
                    out = np.clip(src.astype(np.float32) * gains + rng.uniform(-12, 12), 0, 255).astype(np.uint8)
                    how = f"colour-shifted (channel gains {np.round(gains, 2).tolist()})"
                q = int(rng.integers(85, 95))
                data, ext = encode_jpeg(out, q), "jpg"
                how += f", JPEG q{q}"
            # distance between the files as a decoder sees them (encoding can move a bit or two)
            dist = int((phash_bits(decode_rgb(data)) != phash_bits(src)).sum())
            stage = "phash" if dist <= NEAR_DUP_PHASH else "embedding"
            g = group_of(orig)
            self.add(Item(f"{orig.key}_near{i:02d}", ext, data, "near_dup", orig.has_person, orig.n_persons,
                          f"{how} of {orig.key}; pHash distance {dist}", expected=stage, dup_group=g,
                          dup_of=orig.key))

    def broken(self) -> None:
        for i in range(self.counts["corrupt"]):
            rng = _rng(self.seed, "corrupt", i)
            rgb, info = compose.compose_person(rng)
            data = damage.corrupt_bytes(rng, encode_jpeg(rgb, 90) if i % 2 else None)
            how = "JPEG headers overwritten with noise" if i % 2 else "random bytes behind a JPEG signature"
            self.add(Item(f"corrupt_{i:04d}", "jpg", data, "corrupt", False, 0, how))
        for i in range(self.counts["truncated_file"]):
            rng = _rng(self.seed, "truncated_file", i)
            rgb, info = compose.compose_person(rng)
            frac = float(rng.uniform(0.3, 0.7))
            full, ext = (encode_jpeg(rgb, 90), "jpg") if i % 2 == 0 else (encode_png(rgb, compress_level=1), "png")
            self.add(Item(f"truncated_file_{i:04d}", ext, damage.truncate(full, frac), "truncated_file", True,
                          info["n_persons"], f"{ext.upper()} cut at {frac:.0%} of its bytes; {_describe(info)}"))
        for i in range(self.counts["empty_file"]):
            self.add(Item(f"empty_file_{i:04d}", "jpg", b"", "empty_file", False, 0, "zero bytes"))
        sizes = [(30000, 30000), (40000, 25000), (20000, 50000)]
        for i in range(self.counts["decompression_bomb"]):
            w, h = sizes[i % len(sizes)]
            data = damage.png_bomb(w, h)
            self.add(Item(f"decompression_bomb_{i:04d}", "png", data, "decompression_bomb", False, 0,
                          f"1-bit PNG of zeros claiming {w}x{h} = {w * h / 1e6:.0f} Mpx in {len(data) // 1024} kB"))

    def build(self) -> list[Item]:
        self.people()
        self.odd_modes()
        self.no_person()
        self.resolution_rejects()
        self.quality_rejects()
        self.framing_rejects()
        self.duplicates()
        self.broken()
        return self.items


def scale_counts(scale: str = "small", n_people: int | None = None,
                 counts: dict[str, int] | None = None) -> dict[str, int]:
    """Items per category for ``scale``; ``n_people`` overrides the number of kept person images,
    ``counts`` any category (unknown names are an error)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    unknown = sorted(set(counts or {}) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; allowed: {list(CATEGORIES)}")
    counts = {**SCALES[scale], **(counts or {})}
    if n_people is not None:
        counts["person"] = int(n_people)
    if counts["person"] < 1 and (counts["exact_dup"] or counts["near_dup"]):
        raise ValueError("duplicates need at least one person image (n_people >= 1)")
    if any(v < 0 for v in counts.values()):
        raise ValueError(f"counts must be >= 0, got {counts}")
    return counts


def make_demo_pool(out_dir: str | os.PathLike, n_people: int | None = None, seed: int = 0,
                   scale: str = "small", overwrite: bool = False, counts: dict[str, int] | None = None) -> Path:
    """Write the labelled demo pool to ``out_dir`` (``images/`` + ``labels.parquet``) and return it.

    ``scale``: ``small`` (~120 items, a few seconds, for tests) or ``demo`` (~480 items).
    ``n_people``: kept person images (default 34 / 150); ``counts`` overrides any category's count.
    The same arguments give the same bytes.
    An existing non-empty ``out_dir`` is refused unless ``overwrite``. Written to a temporary
    folder beside ``out_dir`` and renamed when complete.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = scale_counts(scale, n_people, counts)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    dest = AtomicFile(out, tmp=tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp = dest.tmp
    try:
        (tmp / "images").mkdir()
        items = _Builder(seed, counts).build()
        rows = {c: [] for c in LABEL_COLUMNS}
        for it in progress(items, desc="demo pool: writing", unit="img"):
            rel = f"images/{it.key}.{it.ext}"
            (tmp / rel).write_bytes(it.data)
            values = dict(key=it.key, file=rel, category=it.category, has_person=bool(it.has_person),
                          n_persons=int(it.n_persons),
                          expected_reject_stage=it.expected if it.expected is not None else EXPECTED_STAGE[it.category],
                          dup_group=it.dup_group, dup_of=it.dup_of, notes=it.notes)
            for c in LABEL_COLUMNS:
                rows[c].append(values[c])
        schema = pa.schema([("key", pa.string()), ("file", pa.string()), ("category", pa.string()),
                            ("has_person", pa.bool_()), ("n_persons", pa.int32()),
                            ("expected_reject_stage", pa.string()), ("dup_group", pa.string()),
                            ("dup_of", pa.string()), ("notes", pa.string())])
        pq.write_table(pa.table(rows, schema=schema), tmp / "labels.parquet")
        dest.commit()
    except BaseException:
        dest.abort()
        raise
    log.info("demo pool: %d items (%s scale, seed %d) in %s", len(items), scale, seed, out)
    return out
