"""Stage 1: resolution and aspect ratio, judged from the image header alone (no pixel decode)."""
from __future__ import annotations

from humans.shared.imageio import ImageHeader

from ..config import ResolutionStage
from . import Decision

REASONS = ("too_small", "too_few_pixels", "bad_aspect")


def decide(header: ImageHeader, cfg: ResolutionStage) -> Decision:
    """Keep an image whose short side, pixel count and aspect ratio are within ``cfg``."""
    w, h = header.width, header.height
    short, long_ = min(w, h), max(w, h)
    aspect = long_ / max(short, 1)
    scores = {"width": w, "height": h, "aspect": round(aspect, 4), "format": header.format,
              "mode": header.mode}
    if short < cfg.min_short_side:
        return False, "too_small", scores
    if w * h < cfg.min_pixels:
        return False, "too_few_pixels", scores
    if aspect > cfg.max_aspect:
        return False, "bad_aspect", scores
    return True, "", scores
