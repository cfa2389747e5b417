"""Multi-crop views of one image: global views (geometric augmentation only) and local views
(geometric + colour augmentation).

Every random choice is drawn from an explicit ``torch.Generator`` seeded per sample, never from a
global RNG, so the views of a sample are a pure function of (image, seed): a resumed run rebuilds
exactly the views an uninterrupted run would have seen, in any worker process.

Images are ``uint8`` CHW tensors in and out; normalisation happens on the training device.
Global views are a bilinear (antialiased) resampling of a crop of the source, optionally flipped:
no pixel value is changed by anything but interpolation, so a constant-colour image gives
constant views of exactly that colour. Local views add ColorJitter (random order), grayscale,
Gaussian blur and solarisation. Copy-detection edits (``rotate_p``, ``letterbox_p``; off unless asked, and
drawing nothing from the generator when off) rotate a view slightly, cropped to its interior, or squeeze it
between bars of one grey: what a re-poster does to a photo, for an embedder that must see through it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from .config import ViewsConfig


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _bernoulli(g: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=g)) < p


def _randint(g: torch.Generator, lo: int, hi_inclusive: int) -> int:
    return int(torch.randint(lo, hi_inclusive + 1, (), generator=g))


@dataclass(frozen=True)
class Crop:
    top: int
    left: int
    height: int
    width: int
    flip: bool


def sample_crop(g: torch.Generator, height: int, width: int, scale: tuple[float, float],
                ratio: tuple[float, float], hflip_p: float) -> Crop:
    """RandomResizedCrop parameters (the torchvision algorithm) drawn from ``g``, plus a flip."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(g, *scale)
        aspect = math.exp(_uniform(g, *log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(g, 0, height - h)
            left = _randint(g, 0, width - w)
            return Crop(top, left, h, w, _bernoulli(g, hflip_p))
    # fallback: the largest central crop within the ratio range
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return Crop((height - h) // 2, (width - w) // 2, h, w, _bernoulli(g, hflip_p))


def geometric(img: torch.Tensor, crop: Crop, size: int) -> torch.Tensor:
    """Crop, resize to ``size`` x ``size`` (bilinear, antialiased) and flip; no value changes."""
    out = TF.resized_crop(img, crop.top, crop.left, crop.height, crop.width, [size, size],
                          interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.horizontal_flip(out) if crop.flip else out


def copy_edit(img: torch.Tensor, g: torch.Generator, cfg: ViewsConfig) -> torch.Tensor:
    """A square uint8 view, maybe rotated (cropped to the rotated frame's interior, resized back) and maybe
    letterboxed (bars of one random grey above and below, or left and right); same size out."""
    size = img.shape[-1]
    if cfg.rotate_p > 0 and _bernoulli(g, cfg.rotate_p):
        angle = _uniform(g, -cfg.rotate_deg, cfg.rotate_deg)
        rad = math.radians(abs(angle))
        inner = max(2, int(size / (math.cos(rad) + math.sin(rad))))  # largest upright square inside
        rotated = TF.rotate(img, angle, interpolation=InterpolationMode.BILINEAR)
        top = (size - inner) // 2
        img = TF.resized_crop(rotated, top, top, inner, inner, [size, size],
                              interpolation=InterpolationMode.BILINEAR, antialias=True)
    if cfg.letterbox_p > 0 and _bernoulli(g, cfg.letterbox_p):
        bar = int(round(size * _uniform(g, *cfg.letterbox_frac)))
        shade = _randint(g, 0, 255)
        vertical = _bernoulli(g, 0.5)                 # bars above and below (else left and right)
        inner = max(1, size - 2 * bar)
        shape = [inner, size] if vertical else [size, inner]
        squeezed = TF.resize(img, shape, interpolation=InterpolationMode.BILINEAR, antialias=True)
        out = torch.full_like(img, shade)
        if vertical:
            out[:, bar:bar + inner] = squeezed
        else:
            out[:, :, bar:bar + inner] = squeezed
        img = out
    return img


def colour(img: torch.Tensor, g: torch.Generator, cfg: ViewsConfig) -> torch.Tensor:
    """Colour augmentation of a uint8 view: jitter (random order), grayscale, blur, solarise."""
    if _bernoulli(g, cfg.color_jitter_p):
        factors = {
            "brightness": _uniform(g, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness),
            "contrast": _uniform(g, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast),
            "saturation": _uniform(g, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation),
            "hue": _uniform(g, -cfg.hue, cfg.hue),
        }
        for idx in torch.randperm(4, generator=g).tolist():
            name = ("brightness", "contrast", "saturation", "hue")[idx]
            f = factors[name]
            if name == "brightness":
                img = TF.adjust_brightness(img, f)
            elif name == "contrast":
                img = TF.adjust_contrast(img, f)
            elif name == "saturation":
                img = TF.adjust_saturation(img, f)
            elif f != 0.0:
                img = TF.adjust_hue(img, f)
    if _bernoulli(g, cfg.grayscale_p):
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    if _bernoulli(g, cfg.blur_p):
        sigma = _uniform(g, *cfg.blur_sigma)
        k = int(2 * math.ceil(3 * sigma) + 1)            # odd, covers +-3 sigma
        k = max(3, min(k, (min(img.shape[-2:]) - 1) // 2 * 2 + 1))  # reflect padding needs k <= side
        img = TF.gaussian_blur(img, [k, k], [sigma, sigma])
    if _bernoulli(g, cfg.solarize_p):
        img = TF.solarize(img, threshold=128)
    return img


def make_views(img: torch.Tensor, cfg: ViewsConfig, n_local: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of ``img`` (uint8 [3,H,W]) for one sample.

    Returns ``(global_views [n_global,3,G,G], local_views [n_local,3,L,L])``, both uint8. ``seed``
    fixes every random choice.
    """
    if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"make_views expects a uint8 [3,H,W] tensor, got {img.dtype} {tuple(img.shape)}")
    g = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    h, w = img.shape[-2:]
    globals_ = [copy_edit(geometric(img, sample_crop(g, h, w, cfg.global_scale, cfg.ratio, cfg.hflip_p),
                                    cfg.global_size), g, cfg)
                for _ in range(cfg.n_global)]
    locals_ = []
    for _ in range(n_local):
        view = geometric(img, sample_crop(g, h, w, cfg.local_scale, cfg.ratio, cfg.hflip_p), cfg.local_size)
        locals_.append(colour(copy_edit(view, g, cfg), g, cfg))
    local_t = (torch.stack(locals_) if locals_
               else torch.empty(0, 3, cfg.local_size, cfg.local_size, dtype=torch.uint8))
    return torch.stack(globals_), local_t
