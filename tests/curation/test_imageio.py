"""shared.imageio: every kind of bad or odd file is built here and decoded with real Pillow."""
from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from humans.shared.imageio import (MAX_PIXELS, ImageError, decode_rgb, encode_jpeg, encode_png, read_header,
                            sniff_format)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _zero_png(width: int, height: int, bit_depth: int = 1) -> bytes:
    """A real, valid PNG of zeros (gray): tiny on disk, huge once decoded."""
    row = b"\x00" * (1 + (width * bit_depth + 7) // 8)
    comp = zlib.compressobj(9)
    rows_per_chunk = 500
    chunk = row * rows_per_chunk
    body = []
    for start in range(0, height, rows_per_chunk):
        n = min(rows_per_chunk, height - start)
        body.append(comp.compress(chunk if n == rows_per_chunk else row * n))
    body.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(body))
            + _png_chunk(b"IEND", b""))


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _noise(h=120, w=160, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_plain_rgb_roundtrip_and_header():
    rgb = _noise()
    png = encode_png(rgb)
    hdr = read_header(png, "a.png")
    assert (hdr.width, hdr.height, hdr.format, hdr.mode, hdr.n_frames) == (160, 120, "PNG", "RGB", 1)
    assert np.array_equal(decode_rgb(png), rgb)  # lossless
    jpg = encode_jpeg(rgb, quality=95)
    assert sniff_format(jpg) == "JPEG" and sniff_format(png) == "PNG"
    out = decode_rgb(jpg)
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    # smooth content survives q95 closely
    smooth = np.dstack([np.tile(np.linspace(0, 255, 160), (120, 1))] * 3).astype(np.uint8)
    assert np.abs(decode_rgb(encode_jpeg(smooth)).astype(int) - smooth).mean() < 2.0


def test_empty_non_image_and_corrupt_bytes():
    for data, reason in [(b"", "empty"),
                         (b"<!doctype html><html><body>404 not found</body></html>", "unsupported_format"),
                         (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "corrupt"),
                         (b"\x89PNG\r\n\x1a\n" + b"\x13" * 300, "corrupt")]:
        with pytest.raises(ImageError) as info:
            decode_rgb(data, "pool/item_7")
        assert info.value.reason == reason, (data[:16], info.value)
        assert "pool/item_7" in str(info.value)  # names the source
        with pytest.raises(ImageError):
            read_header(data)
    # ImageError survives pickling (it crosses Ray process boundaries)
    err = pickle.loads(pickle.dumps(ImageError("corrupt", "k1", "detail")))
    assert err.reason == "corrupt" and "k1" in str(err)


def test_truncated_files_are_detected_not_padded():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    rgb = _noise(200, 300)
    jpg, png = encode_jpeg(rgb, 90), encode_png(rgb)
    for data in (jpg[: len(jpg) // 2], jpg[: len(jpg) - 300], png[: len(png) // 2], png[:40]):
        with pytest.raises(ImageError) as info:
            decode_rgb(data, "cut")
        assert info.value.reason == "truncated", info.value
    # the header of a file cut in its pixel data still reads (stage 1 works before decode)
    assert read_header(jpg[: len(jpg) // 2]).width == 300


def test_decompression_bomb_refused_from_header():
    from humans.curation.pool.damage import png_bomb

    bomb = png_bomb(30000, 30000)  # 900 Mpx of zeros, about 110 kB on disk
    assert len(bomb) < 200_000
    with pytest.raises(ImageError) as info:
        decode_rgb(bomb, "bomb.png")
    assert info.value.reason == "decompression_bomb"
    with pytest.raises(ImageError) as info:
        read_header(bomb)
    assert info.value.reason == "decompression_bomb"
    # a smaller one is refused by our own max_pixels before any decode, and passes when allowed
    mid = _zero_png(3000, 2000)
    with pytest.raises(ImageError) as info:
        decode_rgb(mid, "mid", max_pixels=5_000_000)
    assert info.value.reason == "decompression_bomb" and "6000000" in str(info.value)
    assert read_header(mid).pixels == 6_000_000 < MAX_PIXELS
    assert decode_rgb(mid, max_pixels=6_000_000).max() == 0
    # the fast bomb builder writes a valid stream too: a small one decodes to zeros
    small = png_bomb(2000, 1234)
    assert decode_rgb(small).shape == (1234, 2000, 3) and decode_rgb(small).max() == 0


def test_exif_rotation_swaps_dims_and_moves_corner():
    rgb = np.zeros((40, 60, 3), np.uint8)  # stored 60 wide, 40 tall
    rgb[:10, :10] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    jpg = _save(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())
    hdr = read_header(jpg)
    assert hdr.exif_orientation == 6 and (hdr.width, hdr.height) == (40, 60)
    out = decode_rgb(jpg)
    assert out.shape == (60, 40, 3)
    assert out[3, 36, 0] > 200 and out[3, 36, 1] < 60  # red now at the displayed top-right
    assert out[3, 3, 0] < 60 and out[56, 3, 0] < 60
    # orientation 3 (180 degrees): red goes to the bottom-right, dims kept
    exif[0x0112] = 3
    out = decode_rgb(_save(Image.fromarray(rgb), "PNG", exif=exif.tobytes()))
    assert out.shape == (40, 60, 3) and tuple(out[-2, -2]) == (255, 0, 0) and tuple(out[1, 1]) == (0, 0, 0)


def test_cmyk_jpeg_colours_approximately_right():
    colours = {(0, 255, 255, 0): (255, 0, 0), (255, 0, 255, 0): (0, 255, 0), (0, 0, 0, 255): (0, 0, 0),
               (0, 0, 0, 0): (255, 255, 255), (255, 255, 0, 0): (0, 0, 255)}
    im = Image.new("CMYK", (50, 10 * len(colours)))
    for i, cmyk in enumerate(colours):
        im.paste(cmyk, (0, 10 * i, 50, 10 * i + 10))
    jpg = _save(im, "JPEG", quality=95)
    assert read_header(jpg).mode == "CMYK"
    out = decode_rgb(jpg, "cmyk.jpg")
    for i, rgb in enumerate(colours.values()):
        got = out[10 * i + 5, 25].astype(int)
        assert np.abs(got - np.array(rgb)).max() < 25, (rgb, got)


def test_sixteen_bit_gray_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 512).round().astype(np.uint16), (8, 1))
    png = encode_png(ramp)
    assert read_header(png).mode.startswith("I")
    out = decode_rgb(png)
    assert out.shape == (8, 512, 3) and out.min() == 0 and out.max() == 255
    assert len(np.unique(out[0, :, 0])) == 256  # all 8-bit levels used, monotonic
    assert np.all(np.diff(out[0, :, 0].astype(int)) >= 0)
    assert abs(int(out[0, 256, 0]) - 128) <= 1  # mid-gray stays mid-gray (Pillow's convert would clip to 255)
    assert np.array_equal(out[..., 0], out[..., 2])


def test_palette_with_transparency_and_alpha_composited_on_white():
    p = Image.new("P", (20, 20))
    p.putpalette([0, 0, 255, 255, 0, 0] + [0] * (256 * 3 - 6))
    p.paste(1, (10, 0, 20, 20))
    png = _save(p, "PNG", transparency=0)  # index 0 (blue) is transparent
    assert read_header(png).mode == "P"
    out = decode_rgb(png)
    assert tuple(out[5, 2]) == (255, 255, 255) and tuple(out[5, 15]) == (255, 0, 0)

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128  # half transparent red over white -> (227, 127, 127)
    out = decode_rgb(encode_png(rgba))
    assert np.abs(out[0, 0].astype(int) - np.array([227, 127, 127])).max() <= 2
    la = Image.fromarray(np.dstack([np.full((4, 4), 0, np.uint8), np.zeros((4, 4), np.uint8)]), mode="LA")
    assert tuple(decode_rgb(_save(la, "PNG"))[0, 0]) == (255, 255, 255)  # fully transparent -> white


def test_grayscale_bilevel_and_multiframe_first_frame():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = decode_rgb(encode_png(gray))
    assert np.array_equal(out[..., 1], gray)
    bilevel = Image.fromarray(np.eye(8, dtype=bool))
    assert decode_rgb(_save(bilevel, "PNG"))[3, 3].tolist() == [255, 255, 255]
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    hdr = read_header(gif)
    assert hdr.n_frames == 3 and (hdr.width, hdr.height) == (32, 24)
    assert tuple(decode_rgb(gif)[10, 10]) == (255, 0, 0)
    tif = _save(frames[1], "TIFF", save_all=True, append_images=[frames[2]])
    assert read_header(tif).n_frames == 2 and tuple(decode_rgb(tif)[0, 0]) == (0, 255, 0)


def test_encoders_validate_input():
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 2), np.uint8))


def test_reduced_decode_of_a_large_jpeg_feeds_the_same_filter_decisions_and_keeps_its_bytes(tmp_path):
    """A 2000 px JPEG is decoded once at reduced scale (>= the size the analyses need), quality decides as on
    a full decode, the shard keeps the original bytes at the header's size, and pHash barely moves; small
    JPEGs and PNGs decode exactly as before; truncated data still fails as truncated."""
    import cv2
    import skimage.data

    from humans.curation.config import load_pipeline
    from humans.curation.sources import PoolTask
    from humans.curation.stages import quality
    from humans.curation.demo_pool import phash_bits
    from humans.curation.detectors import detector_long_side
    from humans.curation.work import filter_task
    from humans.shared.imageio import decode_rgb_reduced

    photo = cv2.resize(skimage.data.astronaut(), (2000, 1600), interpolation=cv2.INTER_CUBIC)
    big = encode_jpeg(photo, 90)
    rgb, scale = decode_rgb_reduced(big, "big", 640)
    assert scale == 2 and rgb.shape == (800, 1000, 3)
    full = decode_rgb(big)
    assert np.abs(cv2.resize(full, (1000, 800), interpolation=cv2.INTER_AREA).astype(int) - rgb).mean() < 3
    small_jpeg, png = encode_jpeg(skimage.data.astronaut(), 90), encode_png(skimage.data.astronaut())
    for data in (small_jpeg, png):
        out, s = decode_rgb_reduced(data, "s", 640)
        assert s == 1 and np.array_equal(out, decode_rgb(data))
    with pytest.raises(ImageError) as err:
        decode_rgb_reduced(big[: len(big) // 2], "cut", 640)
    assert err.value.reason == "truncated"

    cfg = load_pipeline("humans-test")
    # the detector's copy: 640 px for OpenCV (the default install), 384 px for MediaPipe (the extra)
    side = detector_long_side(cfg.stage("person"))
    (tmp_path / "big.jpg").write_bytes(big)
    res = filter_task(PoolTask("files-000000-big", "files", str(tmp_path), (("big.jpg", "big"),)), cfg, 0)
    (surv,) = res["survivors"]
    assert surv["data"] == big and (surv["width"], surv["height"]) == (2000, 1600) and surv["converted"] == ""
    assert surv["small"].shape == (round(side * 0.8), side, 3)
    qcfg = cfg.stage("quality")
    on_full = quality.decide(quality.measure(full, big, qcfg), qcfg)
    assert res["rows"]["quality"][0]["kept"] is on_full[0] is True
    small_full = cv2.resize(full, (side, round(side * 0.8)), interpolation=cv2.INTER_AREA)
    assert (phash_bits(surv["small"]) != phash_bits(small_full)).sum() <= 2
