"""Stage 4: human framing: the largest person must be big enough, the image must not be a crowd,
and the main person must not be cut off at the border.

Truncation has two signals: the largest person's box touches more than ``max_touching_sides``
image edges (within ``border_margin_frac``), or, where the detector gives body landmarks (pose
models place landmarks of cut-off body parts outside the frame), more than ``max_cut_landmarks``
of them lie beyond the left, right or top border. A cut at the bottom is allowed: upper-body
portraits are wanted. (Measured on the demo pool: side-cut people put 3-5 of 33 landmarks outside,
whole or portrait-framed people 0-1.)
"""
from __future__ import annotations

from ..config import FramingStage
from . import Decision

REASONS = ("small_person", "too_many_people", "truncated_person")


def measure(people: list[dict], width: int, height: int, cfg: FramingStage) -> dict:
    """Framing scores of the largest person (``people`` sorted largest first, confident only)."""
    if not people:
        return {"n_persons": 0, "largest_person_frac": 0.0, "largest_height_frac": 0.0,
                "touching_sides": 0, "cut_landmarks": None}
    x0, y0, x1, y1 = people[0]["box"]
    mx, my = cfg.border_margin_frac * width, cfg.border_margin_frac * height
    touching = int(x0 <= mx) + int(y0 <= my) + int(x1 >= width - mx) + int(y1 >= height - my)
    cut = None
    lm = people[0].get("landmarks")
    if lm:
        cut = sum(1 for x, y, _v in lm if x < -mx or x > width + mx or y < -my)
    return {"n_persons": len(people),
            "largest_person_frac": round((x1 - x0) * (y1 - y0) / float(width * height), 4),
            "largest_height_frac": round((y1 - y0) / float(height), 4),
            "touching_sides": touching, "cut_landmarks": cut}


def decide(scores: dict, cfg: FramingStage) -> Decision:
    if scores["n_persons"] > cfg.max_persons:
        return False, "too_many_people", scores
    if scores["largest_height_frac"] < cfg.min_person_height_frac or \
            scores["largest_person_frac"] < cfg.min_person_area_frac:
        return False, "small_person", scores
    cut = scores["cut_landmarks"]
    if scores["touching_sides"] > cfg.max_touching_sides or (cut is not None and cut > cfg.max_cut_landmarks):
        return False, "truncated_person", scores
    return True, "", scores
