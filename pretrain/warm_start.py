"""Warm start: begin a new run from another run's weights (``init``), with a fresh optimizer and schedule.

The usual second stage of a pretraining recipe: continue a backbone at a larger input size, on other
data or with another objective. ``source`` is either a training checkpoint of ``pretrain train`` (a
``step_NNNNNNNN.pt`` file, a ``RUN/ckpt`` directory or a run directory: its newest checkpoint) or a
backbone ``.safetensors`` written by ``pretrain export``.

From a training checkpoint the backbone must match exactly (keys and shapes, else
``CheckpointMismatch`` naming them); the other parts (MAE decoder, self-distillation head, centre)
are taken where names and shapes match and start fresh otherwise, so a ``mae`` run can seed a
``mae+cl`` run. The EMA teacher comes from the checkpoint's teacher when both runs have one, else it
starts as a copy of the warm-started student. From a ``.safetensors`` backbone only the backbone is
loaded. Positions are RoPE (or sine-cosine in the decoder), so a run at another input size loads the
same tensors. Only whole-file checkpoints are read (not FSDP's sharded directories).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from humans.shared.backbone import load_state_strict
from humans.shared.backbone.io import read_metadata
from humans.shared.log import get_logger

from .checkpoint import latest_checkpoint, load_checkpoint, step_of

log = get_logger("pretrain.warm_start")

BACKBONE = "encoder.backbone."


def _matching(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in given.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}


def warm_start(model: nn.Module, teacher: nn.Module | None, source: str | Path) -> dict[str, object]:
    """Load ``source`` into ``model`` (a ``PretrainModel``) and ``teacher``; return what was loaded.

    The summary names the source file, its step (``None`` for a ``.safetensors`` backbone), how many
    tensors were loaded and which of the model's tensors start fresh.
    """
    src = Path(source)
    if src.suffix == ".safetensors":
        read_metadata(src)                                   # a clear error for a missing/unreadable file
        backbone_sd = load_file(str(src))
        load_state_strict(model.encoder.backbone, backbone_sd, str(src), "this run's backbone")
        rest: dict[str, torch.Tensor] = {}
        teacher_sd: dict[str, torch.Tensor] | None = None
        step = None
    else:
        path = latest_checkpoint(src)
        if path is None:
            raise FileNotFoundError(f"init: no checkpoint at {src} (expected a step_NNNNNNNN.pt file, a RUN/ckpt "
                                    "directory, a run directory or a backbone .safetensors)")
        if path.is_dir():
            raise ValueError(f"init: {path} is a sharded (FSDP) checkpoint; export it first "
                             "(`python -m humans.pretrain export`) and pass the .safetensors")
        state = load_checkpoint(path)
        given = state["model"]
        backbone_sd = {k[len(BACKBONE):]: v for k, v in given.items() if k.startswith(BACKBONE)}
        load_state_strict(model.encoder.backbone, backbone_sd, str(path), "this run's backbone")
        rest = _matching(model.state_dict(), {k: v for k, v in given.items() if not k.startswith(BACKBONE)})
        model.load_state_dict(rest, strict=False)
        teacher_sd = state.get("teacher") or None
        step = step_of(path)
        src = path
    own_keys = set(model.state_dict())
    loaded = {BACKBONE + k for k in backbone_sd} | set(rest)
    fresh = sorted(own_keys - loaded)
    teacher_from = "none"
    if teacher is not None:
        teacher.load_state_dict(model.encoder.state_dict())  # the student's (warm) weights
        teacher_from = "student copy"
        if teacher_sd:
            own_t = teacher.state_dict()
            take = _matching(own_t, teacher_sd)
            if all(k in take for k in own_t if k.startswith("backbone.")):
                teacher.load_state_dict(take, strict=False)
                teacher_from = "checkpoint teacher"
    summary = {"source": str(src), "step": step, "tensors": len(loaded), "fresh": fresh, "teacher": teacher_from}
    log.info("init: weights from %s%s: %d tensors loaded, %d fresh%s; teacher: %s", src,
             "" if step is None else f" (step {step})", len(loaded), len(fresh),
             f" ({', '.join(sorted({k.split('.')[0] + '.' + k.split('.')[1] for k in fresh}))})" if fresh else "",
             teacher_from)
    return summary
