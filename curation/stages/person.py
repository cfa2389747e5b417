"""Stage 3: person detection; an image is kept when it shows at least ``min_persons`` people whose
detector score reaches ``min_score``. Boxes, scores and landmarks go into the sample metadata."""
from __future__ import annotations

from ..config import PersonStage
from . import Decision

REASONS = ("no_person",)


def confident(people: list[dict], cfg: PersonStage) -> list[dict]:
    """The detections at or above ``min_score``, largest box first."""
    keep = [p for p in people if p["score"] >= cfg.min_score]
    return sorted(keep, key=lambda p: -(p["box"][2] - p["box"][0]) * (p["box"][3] - p["box"][1]))


def decide(people: list[dict], cfg: PersonStage) -> Decision:
    conf = confident(people, cfg)
    scores = {"n_detections": len(people), "n_persons": len(conf),
              "det_score": round(max((p["score"] for p in conf), default=0.0), 4)}
    if len(conf) < cfg.min_persons:
        return False, "no_person", scores
    return True, "", scores
