"""Safe image decoding for untrusted bytes (web pools, shards, user folders).

Owns: reading an image header without decoding pixels (``read_header``), decoding any common
file into an HxWx3 uint8 RGB array (``decode_rgb``), and encoding arrays back (``encode_jpeg``,
``encode_png``). Every failure is an ``ImageError`` with a named ``reason`` and the source in its
message; no Pillow exception escapes.

What ``decode_rgb`` guarantees:

- decompression bombs are refused from the header size, before any pixel is decoded
  (``max_pixels``; Pillow's own absolute limit of ``2 * Image.MAX_IMAGE_PIXELS`` also applies);
- truncated files raise ``truncated`` (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never turned on);
- EXIF orientation is applied, so the array is upright as a viewer would show it;
- CMYK (with its ICC profile when one is embedded), 16/32-bit grayscale (scaled by bit depth,
  not clipped), palette images (with transparency), LA/RGBA/PA (composited on white), 1-bit and
  float images become RGB; multi-frame files (GIF, TIFF, WebP) give their first frame.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

# Default pixel budget: the same number Pillow warns at (~89.5 Mpx, e.g. 9459 x 9459).
MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)
# Refuse byte strings larger than this before parsing anything.
MAX_BYTES = 256 * 1024 * 1024

REASONS = ("empty", "truncated", "corrupt", "decompression_bomb", "unsupported_format", "too_many_bytes")

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # orientations that rotate by 90/270 degrees

# Known signatures: bytes that say "this is meant to be an image" (used to tell a damaged image
# ("corrupt") from something that is not an image at all ("unsupported_format")).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "TIFF"),
    (0, b"MM\x00+", "TIFF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG2000"),
    (0, b"qoif", "QOI"),
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypavis", "AVIF"),
    (4, b"ftypheic", "HEIF"),
    (4, b"ftypheix", "HEIF"),
    (4, b"ftypmif1", "HEIF"),
)


class ImageError(ValueError):
    """Bytes that cannot be turned into an image; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, source: str = "", detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown ImageError reason {reason!r}; allowed: {REASONS}")
        self.reason = reason
        self.source = source
        self.detail = detail
        where = source or "<bytes>"
        super().__init__(f"{where}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # picklable across Ray workers
        return (ImageError, (self.reason, self.source, self.detail))


@dataclass(frozen=True)
class ImageHeader:
    """What the header says: size as displayed (after EXIF rotation), format, mode, frames."""

    width: int
    height: int
    format: str
    mode: str
    exif_orientation: int = 1
    n_frames: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff_format(data: bytes) -> str | None:
    """Format named by the leading magic bytes (JPEG, PNG, GIF, WEBP, ...), or None if unknown."""
    head = bytes(data[:32])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"123456" and head[1:2] != b"":
        return "PPM"
    for offset, magic, name in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def _open(data: bytes, source: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and enforce the byte and pixel budgets."""
    if data is None or len(data) == 0:
        raise ImageError("empty", source, "no bytes")
    if len(data) > MAX_BYTES:
        raise ImageError("too_many_bytes", source, f"{len(data)} bytes > {MAX_BYTES}")
    magic = sniff_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError("decompression_bomb", source, str(exc)) from None
    except UnidentifiedImageError:
        if magic is None:
            raise ImageError("unsupported_format", source, "not a recognised image format") from None
        if len(data) < 64:
            raise ImageError("truncated", source, f"{magic} header cut short ({len(data)} bytes)") from None
        raise ImageError("corrupt", source, f"{magic} signature but the header cannot be parsed") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure is bad data, never a crash
        err = _classify(exc, source, magic)
        if err.reason == "truncated":
            # the header itself does not parse: garbage segment lengths also "run off the end", so
            # only pixel data that stops short (decode_rgb) counts as truncated
            err = ImageError("corrupt", source, f"{magic} header does not parse: {err.detail}")
        raise err from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError("corrupt", source, f"header gives size {w}x{h}")
    if w * h > max_pixels:
        raise ImageError("decompression_bomb", source, f"{w}x{h} = {w * h} pixels > max_pixels {max_pixels}")
    return im


def _classify(exc: BaseException, source: str, magic: str | None) -> ImageError:
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if isinstance(exc, (EOFError,)) or "truncat" in low or "premature" in low or "incomplete" in low:
        return ImageError("truncated", source, text)
    if isinstance(exc, MemoryError):
        return ImageError("decompression_bomb", source, text)
    if magic is None:
        return ImageError("unsupported_format", source, text)
    return ImageError("corrupt", source, text)


def _orientation(im: Image.Image) -> int:
    """EXIF orientation without decoding pixels (PNG's getexif() would load the whole image)."""
    try:
        if im.format == "PNG":
            raw = im.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw if isinstance(raw, bytes) else bytes(raw))
        else:
            exif = im.getexif()
        value = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - broken EXIF is ignored, as viewers do
        return 1
    return value if 1 <= value <= 8 else 1


def read_header(data: bytes, source: str = "", max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """Parse the header only: displayed width/height (EXIF applied), format, mode, frame count.

    Raises ImageError (``empty``, ``unsupported_format``, ``corrupt``, ``truncated``,
    ``decompression_bomb`` when width*height > max_pixels, ``too_many_bytes``).
    """
    im = _open(data, source, max_pixels)
    orient = _orientation(im)
    w, h = im.size
    if orient in _SWAPS_AXES:
        w, h = h, w
    n_frames = int(getattr(im, "n_frames", 1) or 1)
    return ImageHeader(width=w, height=h, format=str(im.format or ""), mode=str(im.mode),
                       exif_orientation=orient, n_frames=n_frames)


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.int64)
        lo, hi = int(arr.min()), int(arr.max())
        if mode == "I" and (lo < 0 or hi > 65535):
            # a true 32-bit image: stretch its range (no bit depth to scale by)
            scaled = (arr - lo) * 255 // max(hi - lo, 1)
        else:
            scaled = (arr * 255 + 32767) // 65535  # 16-bit -> 8-bit by bit depth: 65535 -> 255
        gray = scaled.astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            gray = np.round(arr * 255.0)
        else:
            gray = np.round((arr - lo) * 255.0 / max(hi - lo, 1e-12))
        return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)
    if mode == "CMYK":
        icc = im.info.get("icc_profile")
        if icc:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
                if out is not None:
                    return np.asarray(out, dtype=np.uint8)
            except Exception:  # noqa: BLE001 - a bad profile falls back to the plain conversion
                pass
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
        if mode == "RGB":
            return np.asarray(im, dtype=np.uint8)
    if mode in ("1",):
        im = im.convert("L")
        mode = "L"
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode_rgb(data: bytes, source: str = "", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode bytes to an upright HxWx3 uint8 RGB array; raises ImageError for bad data."""
    return _decode(_open(data, source, max_pixels), data, source)


def decode_rgb_reduced(data: bytes, source: str = "", long_side: int = 640, max_pixels: int = MAX_PIXELS,
                       max_scale: int = 4) -> tuple[np.ndarray, int]:
    """Like :func:`decode_rgb`, but a JPEG is decoded at the coarsest DCT scale (1/2, 1/4, never beyond
    1/``max_scale``) that keeps its long side >= ``long_side`` (Pillow ``draft``): the pixels an analysis
    at ``long_side`` needs, for a fraction of a full decode. Returns ``(rgb, scale)``; any other format,
    or a JPEG too small to reduce, decodes in full (scale 1)."""
    im = _open(data, source, max_pixels)
    scale = 1
    if im.format == "JPEG" and max(im.size) > 0:
        w, h = im.size
        target = max(long_side, math.ceil(max(w, h) / max_scale))
        request = (math.ceil(w * target / max(w, h)), math.ceil(h * target / max(w, h)))
        try:
            im.draft(im.mode, request)
        except Exception as exc:  # noqa: BLE001 - a header draft cannot use is bad data
            raise _classify(exc, source, sniff_format(data)) from None
        scale = max(1, round(w / im.size[0]))
    return _decode(im, data, source), scale


def _decode(im: Image.Image, data: bytes, source: str) -> np.ndarray:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated files would pass "
                           "silently; leave it False")
    magic = sniff_format(data)
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # noqa: BLE001 - unreadable EXIF: show the pixels as stored, as viewers do
                pass
            rgb = _to_rgb(im)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder failures are bad data
        raise _classify(exc, source, magic) from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError("corrupt", source, f"decoded to shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _check_array(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return arr


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an HxWx3 (or HxW gray) uint8 array as baseline JPEG bytes."""
    arr = _check_array(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"encode_jpeg needs uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 4:
        raise ValueError("encode_jpeg cannot store alpha; composite it first or use encode_png")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def encode_png(arr: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode uint8 (L, RGB, RGBA) or uint16 (16-bit grayscale) arrays as PNG bytes
    (``compress_level`` 0-9: zlib effort; 1 is ~5x faster than 6 for ~10-20 % larger files)."""
    arr = _check_array(arr)
    if arr.dtype == np.uint16:
        if arr.ndim != 2:
            raise ValueError("uint16 arrays must be HxW (16-bit grayscale)")
        im = Image.fromarray(np.ascontiguousarray(arr.astype(np.uint16)))  # -> mode "I;16"
    elif arr.dtype == np.uint8:
        im = Image.fromarray(np.ascontiguousarray(arr))
    else:
        raise ValueError(f"encode_png needs uint8 or uint16, got {arr.dtype}")
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=int(compress_level))
    return buf.getvalue()
