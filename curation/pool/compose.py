"""Image synthesis for the demo pool: backgrounds (crops of real scenes, textures, procedural
scenes) and people composited onto them at a given size and position with a feathered matte.

Everything is a pure function of a ``numpy.random.Generator`` so the pool is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import functools

import numpy as np
from PIL import Image

from . import assets

CANVASES = ((640, 512), (768, 576), (512, 640), (576, 768), (720, 540), (800, 600), (600, 800),
            (640, 640), (832, 624), (544, 720))  # (width, height), short side >= 512


def resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 array to (width, height) with Lanczos (area-correct for shrinking)."""
    w, h = int(size[0]), int(size[1])
    if arr.shape[1] == w and arr.shape[0] == h:
        return np.array(arr)
    return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize((w, h), Image.BICUBIC, reducing_gap=2.0))


def smooth_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 4) -> np.ndarray:
    """Multi-octave value noise in 0..1 (random grids summed at quarter size, then upsampled)."""
    lw, lh = max(2, w // 4), max(2, h // 4)
    out = np.zeros((lh, lw), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        out += amp * np.asarray(Image.fromarray(grid).resize((lw, lh), Image.BILINEAR))
        total += amp
        amp *= 0.5
    out = np.asarray(Image.fromarray(out / total).resize((w, h), Image.BILINEAR))
    return (out - out.min()) / max(float(out.max() - out.min()), 1e-6)


def _colour(rng: np.random.Generator, lo: int = 30, hi: int = 230) -> np.ndarray:
    return rng.integers(lo, hi, 3).astype(np.float32)


def procedural_scene(rng: np.random.Generator, size: tuple[int, int], kind: str | None = None) -> tuple[np.ndarray, str]:
    """A person-free synthetic scene: 'gradient', 'landscape', 'noise', 'stripes' or 'shapes'."""
    full_w, full_h = size
    kind = kind or str(rng.choice(["gradient", "landscape", "noise", "stripes", "shapes"]))
    # rendered at half size (4x fewer pixels), upsampled, then given full-resolution grain
    img = _procedural(rng, (max(2, full_w // 2), max(2, full_h // 2)), kind)
    img = resize(img, (full_w, full_h))
    return add_grain(img, rng, 4.0), kind


@functools.lru_cache(maxsize=4)
def _grain_tile(sigma: float) -> Image.Image:
    """A cached 1024x1024 RGB tile of grey Gaussian grain, stored as 128 + sigma * N(0, 1)."""
    noise = np.random.default_rng(12345).standard_normal((1024, 1024), dtype=np.float32)
    tile = np.clip(128.0 + sigma * noise + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(tile[..., None], 3, axis=2))


def add_grain(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Add grey Gaussian grain (a random window of a cached tile; cheap, deterministic)."""
    from PIL import ImageChops

    h, w = img.shape[:2]
    tile = _grain_tile(float(sigma))
    if h > 1024 or w > 1024:
        big = Image.new("RGB", (2048, 2048))
        for ty in (0, 1024):
            for tx in (0, 1024):
                big.paste(tile, (tx, ty))
        tile = big
    y0 = int(rng.integers(0, tile.height - h + 1))
    x0 = int(rng.integers(0, tile.width - w + 1))
    grain = tile.crop((x0, y0, x0 + w, y0 + h))
    return np.array(ImageChops.add(Image.fromarray(img), grain, scale=1.0, offset=-128))


def _procedural(rng: np.random.Generator, size: tuple[int, int], kind: str) -> np.ndarray:
    from skimage import draw

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        a, b = _colour(rng), _colour(rng)
        img = a * (1 - t[..., None]) + b * t[..., None]
        img += (smooth_noise(rng, h, w)[..., None] - 0.5) * 60
    elif kind == "landscape":
        horizon = int(h * rng.uniform(0.35, 0.65))
        sky_top, sky_bot = np.array([70, 120, 200], np.float32) * rng.uniform(0.8, 1.2), np.array(
            [190, 215, 240], np.float32) * rng.uniform(0.85, 1.05)
        t = (yy / max(horizon, 1))[..., None]
        img = sky_top * (1 - t) + sky_bot * t
        clouds = smooth_noise(rng, h, w, 5)
        img += (np.clip(clouds - 0.55, 0, 1) * 300)[..., None]
        tex = assets.photo(str(rng.choice(assets.TEXTURE_NAMES)))
        ground = resize(tex, (w, h - horizon)).astype(np.float32)
        tint = np.array([0.6, 0.8, 0.45], np.float32) * rng.uniform(0.8, 1.3, 3)
        img[horizon:] = ground * tint
        # hills on the horizon
        ridge = horizon - (smooth_noise(rng, 1, w, 3)[0] * h * 0.15).astype(int)
        hill = yy >= ridge[None, :]
        hill &= yy < horizon
        img[hill] = img[hill] * 0.3 + np.array([60, 90, 60], np.float32) * 0.7
    elif kind == "noise":
        field = smooth_noise(rng, h, w, 6)
        import matplotlib

        cmap = matplotlib.colormaps[str(rng.choice(["viridis", "terrain", "copper", "ocean", "twilight"]))]
        img = cmap(field)[..., :3].astype(np.float32) * 255
    elif kind == "stripes":
        period = rng.uniform(12, 60)
        angle = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period)
        a, b = _colour(rng), _colour(rng)
        img = a * (1 - t[..., None]) + b * t[..., None]
        img *= (0.75 + 0.5 * smooth_noise(rng, h, w))[..., None]
    elif kind == "shapes":
        a, b = _colour(rng, 60, 200), _colour(rng, 60, 200)
        t = (yy / h)[..., None]
        img = a * (1 - t) + b * t
        for _ in range(int(rng.integers(6, 16))):
            col = _colour(rng, 0, 255)
            if rng.random() < 0.5:
                rr, cc = draw.disk((rng.uniform(0, h), rng.uniform(0, w)), rng.uniform(8, min(w, h) / 5),
                                   shape=(h, w))
            else:
                y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
                rr, cc = draw.polygon([y0, y0 + rng.uniform(10, 100), y0 + rng.uniform(-25, 100)],
                                      [x0, x0 + rng.uniform(-50, 100), x0 + rng.uniform(10, 100)], shape=(h, w))
            img[rr, cc] = col
    else:
        raise ValueError(f"unknown procedural scene {kind!r}")
    return np.clip(img, 0, 255).astype(np.uint8)


def scene_crop(rng: np.random.Generator, size: tuple[int, int], name: str | None = None) -> tuple[np.ndarray, str]:
    """A random crop of a real person-free photo, resized to ``size``, flipped and tinted at random."""
    name = name or str(rng.choice(assets.SCENE_NAMES))
    src = assets.photo(name)
    w, h = size
    sh, sw = src.shape[:2]
    aspect = w / h
    frac = rng.uniform(0.55, 1.0)
    cw = min(sw, int(round(min(sw, sh * aspect) * frac)))
    ch = min(sh, int(round(cw / aspect)))
    x0 = int(rng.integers(0, sw - cw + 1))
    y0 = int(rng.integers(0, sh - ch + 1))
    im = Image.fromarray(np.ascontiguousarray(src[y0:y0 + ch, x0:x0 + cw]))
    im = im.resize((w, h), Image.BICUBIC, reducing_gap=2.0)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gains = rng.uniform(0.85, 1.15, 3)
    if name in assets.TEXTURE_NAMES or name in ("coins", "moon"):
        gains = gains * (_colour(rng, 120, 255) / 200.0)  # tint grey textures
    # lift dark scenes (hubble, retina, cells) to a normal exposure: mean grey about 110
    mean = float(np.asarray(im.reduce(8).convert("L")).mean())
    target = rng.uniform(95, 135)
    if mean * float(gains.mean()) < target:
        gains = gains * target / max(mean * float(gains.mean()), 1.0)
        lift = float(rng.uniform(10, 30))
    else:
        lift = 0.0
    ramp = np.arange(256, dtype=np.float32)
    table = np.concatenate([np.clip(ramp * g + lift, 0, 255) for g in gains]).astype(np.uint8)
    out = np.asarray(im.point(table.tolist()))
    return add_grain(out, rng, 2.5), name


def background(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    if rng.random() < 0.5:
        img, name = scene_crop(rng, size)
        return img, f"scene:{name}"
    img, kind = procedural_scene(rng, size)
    return img, f"procedural:{kind}"


def _matte(h: int, w: int, open_bottom: bool, feather: float = 0.18) -> np.ndarray:
    """Superellipse alpha (1 inside, fading to 0 at the patch edges; bottom kept hard if asked).
    Computed at quarter size and upsampled: the matte is smooth, so nothing is lost."""
    sw, sh = max(8, w // 4), max(8, h // 4)
    u = np.abs((np.arange(sw, dtype=np.float32) + 0.5) / sw * 2 - 1)[None, :]
    v = ((np.arange(sh, dtype=np.float32) + 0.5) / sh * 2 - 1)[:, None]
    if open_bottom:
        v = np.minimum(v, 0)
    d = (u ** 4 + np.abs(v) ** 4) ** 0.25
    small = np.clip((1.0 - d) / feather, 0, 1).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


@dataclass
class Placement:
    """Where a person patch landed on the canvas (pixel box) and how much it was scaled."""

    box: tuple[int, int, int, int]
    scale: float


def paste_person(canvas: np.ndarray, patch: np.ndarray, height: int, x: int, y: int,
                 flip: bool = False, open_bottom: bool = False) -> Placement:
    """Paste ``patch`` scaled to ``height`` px with its top-left at (x, y); parts outside are cut."""
    ph, pw = patch.shape[:2]
    scale = height / ph
    nw, nh = max(1, int(round(pw * scale))), max(1, int(round(ph * scale)))
    src = resize(patch, (nw, nh))
    if flip:
        src = src[:, ::-1]
    alpha = _matte(nh, nw, open_bottom)[..., None]
    H, W = canvas.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x), max(0, y), min(W, x + nw), min(H, y + nh)
    if cx0 >= cx1 or cy0 >= cy1:
        return Placement((0, 0, 0, 0), scale)
    sx0, sy0 = cx0 - x, cy0 - y
    region = canvas[cy0:cy1, cx0:cx1].astype(np.float32)
    a = alpha[sy0:sy0 + (cy1 - cy0), sx0:sx0 + (cx1 - cx0)]
    s = src[sy0:sy0 + (cy1 - cy0), sx0:sx0 + (cx1 - cx0)].astype(np.float32)
    canvas[cy0:cy1, cx0:cx1] = np.clip(region * (1 - a) + s * a + 0.5, 0, 255).astype(np.uint8)
    return Placement((cx0, cy0, cx1, cy1), scale)


def compose_person(rng: np.random.Generator, size: tuple[int, int] | None = None,
                   height_frac: tuple[float, float] = (0.55, 0.92), patches: tuple[str, ...] | None = None,
                   max_upscale: float = 1.6) -> tuple[np.ndarray, dict]:
    """A person patch (one of ``patches``, default all) on a fresh background, fully inside the frame."""
    size = size or CANVASES[int(rng.integers(len(CANVASES)))]
    choices = [p for p in assets.PERSON_PATCHES if patches is None or p.name in patches]
    patch_def = choices[int(rng.integers(len(choices)))]
    patch = assets.patch_pixels(patch_def.name)
    w, h = size
    ph, pw = patch.shape[:2]
    frac = rng.uniform(*height_frac)
    height = int(h * frac)
    height = min(height, int(ph * max_upscale))
    if pw * height / ph > 0.96 * w:  # too wide for the canvas
        height = int(0.96 * w * ph / pw)
    canvas, bg = background(rng, size)
    nw = int(round(pw * height / ph))
    x = int(rng.integers(int(0.02 * w), max(int(0.02 * w) + 1, w - nw - int(0.02 * w) + 1)))
    open_bottom = not patch_def.full_body and rng.random() < 0.7
    if open_bottom:
        y = h - height  # a portrait cut at the chest, standing on the bottom edge
    else:
        y = int(rng.integers(int(0.02 * h), max(int(0.02 * h) + 1, h - height - int(0.02 * h) + 1)))
    flip = bool(rng.random() < 0.5)
    place = paste_person(canvas, patch, height, x, y, flip=flip, open_bottom=open_bottom)
    info = {"patch": patch_def.name, "source": patch_def.source, "n_persons": patch_def.n_persons,
            "background": bg, "size": size, "box": place.box, "scale": round(place.scale, 3), "flip": flip,
            "height_frac": round((place.box[3] - place.box[1]) / h, 3)}
    return canvas, info
