"""Export a training checkpoint's encoder to ``backbone.safetensors`` (what the heads load).

The checkpoint is read with ``torch.load(weights_only=True)``; the backbone is rebuilt from the
config stored in it, loaded strictly and written by ``shared.backbone.save_backbone`` (safetensors,
config in the metadata, atomic). ``weights`` picks the EMA teacher (default when the run has one:
the teacher is the smoother, usually better encoder) or the student.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml

from humans.shared.backbone import build_backbone, load_state_strict, save_backbone
from humans.shared.config import validate
from humans.shared.log import get_logger

from .checkpoint import latest_checkpoint, load_checkpoint, step_of
from .config import TrainConfig

log = get_logger("pretrain.export")


def export_backbone(checkpoint: str | Path, out: str | Path,
                    weights: Literal["auto", "teacher", "student"] = "auto") -> Path:
    """Write the backbone of ``checkpoint`` (a file, a ckpt directory or a run directory) to ``out``."""
    path = latest_checkpoint(checkpoint)
    if path is None:
        raise FileNotFoundError(f"no checkpoint found at {checkpoint} (expected a step_NNNNNNNN.pt file, "
                                "a RUN/ckpt directory or a run directory)")
    state = load_checkpoint(path)
    cfg = validate(TrainConfig, yaml.safe_load(state["config"]), source=f"{path}: config")
    if weights == "auto":
        weights = "teacher" if state.get("teacher") else "student"
    if weights == "teacher":
        if not state.get("teacher"):
            raise ValueError(f"{path}: has no teacher (objective {cfg.objective!r}); use --weights student")
        src, prefix = state["teacher"], "backbone."
    else:
        src, prefix = state["model"], "encoder.backbone."
    sd = {k[len(prefix):]: v for k, v in src.items() if k.startswith(prefix)}
    model = build_backbone(cfg.model, **cfg.model_overrides)
    load_state_strict(model, sd, str(path), f"backbone {cfg.model!r} ({weights} weights)")
    out = save_backbone(model, out, extra={"source_checkpoint": str(path), "step": str(step_of(path)),
                                           "weights": weights, "objective": cfg.objective})
    log.info("exported %s weights of %s (step %d) to %s", weights, path, step_of(path), out)
    return out
