"""Files that are broken, degraded or stored in odd modes, made from clean RGB arrays.

Degradations (the image is fine as a file but fails a quality / resolution rule): blur, over- and
under-exposure, flat low-information frames, heavy JPEG compression, low resolution, extreme
aspect ratios. Broken files: corrupt bytes, truncated files, empty files, decompression bombs.
Odd modes that a decoder must convert (CMYK JPEG, 16-bit grey PNG, palette PNG with
transparency, EXIF-rotated JPEG).
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageFilter

from humans.shared.imageio import encode_jpeg


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# -- degradations (arrays in, arrays out) ------------------------------------------------------
def blur(rgb: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


def _lut(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).point(list(np.clip(table, 0, 255).astype(np.uint8)) * 3))


def overexpose(rgb: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Blow out the highlights: most pixels clip at 255."""
    return _lut(rgb, np.arange(256) * gain + offset)


def underexpose(rgb: np.ndarray, gain: float) -> np.ndarray:
    """Crush the image into the shadows."""
    return _lut(rgb, np.arange(256) * gain)


def flat_frame(rng: np.random.Generator, size: tuple[int, int], noise: float = 0.8) -> np.ndarray:
    """A nearly uniform frame (a lens cap, a blank wall, a placeholder): very little information."""
    w, h = size
    colour = rng.integers(40, 215, 3).astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = colour
    img += noise * rng.standard_normal((h, w, 1), dtype=np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def heavy_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    return encode_jpeg(rgb, quality=int(quality))


# -- broken files ------------------------------------------------------------------------------
def corrupt_bytes(rng: np.random.Generator, good: bytes | None = None) -> bytes:
    """Either random bytes behind a JPEG signature or a real JPEG whose scan data is overwritten."""
    if good is None or rng.random() < 0.5:
        return b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    data = bytearray(good)
    # destroy the headers after the signature: the quantisation / Huffman tables become noise
    end = min(len(data), 700)
    data[4:end] = rng.integers(0, 256, end - 4, dtype=np.uint8).tobytes()
    return bytes(data)


def truncate(data: bytes, frac: float) -> bytes:
    return data[: max(1, int(len(data) * frac))]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit grey PNG of zeros: ~100 kB on disk, width*height pixels once decoded.

    Built from one compressed block of rows repeated (each block ends with a full flush, so the
    blocks are independent deflate data), with the Adler-32 of the whole stream computed exactly.
    """
    row = b"\x00" * (1 + (width + 7) // 8)
    rows_per_block = 100
    if height < 2 * rows_per_block:  # small: plain compression
        stream = zlib.compress(row * height, 9)
        ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", stream)
                + _png_chunk(b"IEND", b""))
    block_raw = row * rows_per_block
    comp = zlib.compressobj(9)
    head = comp.compress(block_raw) + comp.flush(zlib.Z_FULL_FLUSH)  # zlib header + first block
    body = comp.compress(block_raw) + comp.flush(zlib.Z_FULL_FLUSH)  # a header-less repeatable block
    n_full, rest = divmod(height, rows_per_block)
    parts = [head] + [body] * (n_full - 1)
    adler = zlib.adler32(block_raw)
    for _ in range(n_full - 1):
        adler = zlib.adler32(block_raw, adler)
    tail_comp = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate for the remaining rows + final block
    tail_raw = row * rest
    parts.append(tail_comp.compress(tail_raw) + tail_comp.flush(zlib.Z_FINISH))
    if rest:
        adler = zlib.adler32(tail_raw, adler)
    stream = b"".join(parts) + struct.pack(">I", adler & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", stream)
            + _png_chunk(b"IEND", b""))


# -- odd modes (must decode to the same picture) -------------------------------------------------
def cmyk_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    return _save(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=quality)


def sixteen_bit_png(rgb: np.ndarray, rng: np.random.Generator) -> bytes:
    """16-bit grey PNG using the full range (the low byte carries real detail, not zeros)."""
    gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    g16 = np.clip(gray * 257.0 + rng.uniform(-100, 100, gray.shape), 0, 65535).astype(np.uint16)
    return _save(Image.fromarray(g16), "PNG", compress_level=1)


def palette_png(rgb: np.ndarray, transparent_border: int = 0) -> bytes:
    """Adaptive 255-colour palette PNG; with a border, index 255 is transparent there."""
    im = Image.fromarray(rgb).quantize(colors=255, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    if transparent_border:
        arr = np.array(im)
        b = transparent_border
        arr[:b, :] = 255
        arr[-b:, :] = 255
        arr[:, :b] = 255
        arr[:, -b:] = 255
        pal = im.getpalette()[: 255 * 3] + [0, 0, 0]
        im = _p_image(arr, pal)
        return _save(im, "PNG", transparency=255, compress_level=1)
    return _save(im, "PNG", compress_level=1)


def _p_image(arr: np.ndarray, palette: list[int]) -> Image.Image:
    im = Image.new("P", (arr.shape[1], arr.shape[0]))
    im.putpalette(palette)
    im.frombytes(np.ascontiguousarray(arr).tobytes())
    return im


# EXIF orientation -> the transpose that turns an upright picture into what must be stored
_STORE_FOR = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270,
              2: Image.Transpose.FLIP_LEFT_RIGHT, 5: Image.Transpose.TRANSPOSE, 7: Image.Transpose.TRANSVERSE}


def exif_rotated_jpeg(rgb: np.ndarray, orientation: int, quality: int = 92) -> bytes:
    """Store the pixels turned so that a viewer applying EXIF ``orientation`` shows ``rgb`` upright."""
    if orientation not in _STORE_FOR:
        raise ValueError(f"orientation must be one of {sorted(_STORE_FOR)}")
    stored = Image.fromarray(rgb).transpose(_STORE_FOR[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(stored, "JPEG", quality=quality, exif=exif.tobytes())
