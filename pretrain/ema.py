"""The EMA teacher: ``teacher <- tau * teacher + (1 - tau) * student`` after every optimizer step.

``tau`` is constant (0.992 by default) or follows a cosine schedule from ``tau`` to ``tau_end``
(1.0: the teacher freezes at the end). The update touches parameters only; buffers are copied.
Sharded (FSDP/DTensor) parameters are updated on their local shards, which match element-wise
because teacher and student are sharded the same way.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def tau_at(step: int, total_steps: int, tau: float, schedule: str = "constant", tau_end: float = 1.0) -> float:
    """Momentum for the update after optimizer step ``step`` (0-based) of ``total_steps``."""
    if schedule == "constant":
        return tau
    if schedule == "cosine":
        frac = min(max(step / max(1, total_steps - 1), 0.0), 1.0)
        return tau_end - (tau_end - tau) * (math.cos(math.pi * frac) + 1) / 2
    raise ValueError(f"tau schedule {schedule!r}: allowed 'constant', 'cosine'")


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, tau: float) -> None:
    """``t = t * tau + s * (1 - tau)`` for every parameter (two roundings, like the formula reads)."""
    t_params = [_local(p) for p in teacher.parameters()]
    s_params = [_local(p.detach()) for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError(f"teacher has {len(t_params)} parameters, student {len(s_params)}")
    torch._foreach_mul_(t_params, tau)
    torch._foreach_add_(t_params, torch._foreach_mul(s_params, 1.0 - tau))
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        _local(tb).copy_(_local(sb))
