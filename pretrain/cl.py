"""Self-distillation (DINO-style) branch: projection head to K prototypes and the cross-view loss.

``ClHead``: MLP -> bottleneck -> L2 normalisation -> cosine logits against K L2-normalised
prototypes (the weight-normalised last layer of DINO with its gain fixed to 1).

``ClLoss``: the teacher's logits are centred and sharpened by a low temperature (with an optional
linear warm-up, ``teacher_temperature``); the student's by ``student_temp``. Centring is either the
EMA of the teacher's batch mean (default; all-reduced across ranks) or Sinkhorn-Knopp
(``sinkhorn_knopp``: the teacher's assignments of the global batch rescaled so every prototype gets
an equal share, DINOv2/SwAV). ``koleo_loss`` is DINOv2's optional KoLeo regulariser, which spreads
the student's features by penalising small nearest-neighbour distances. The loss is
the cross-entropy ``-sum p_t log p_s`` averaged over every pair (teacher view i, student view j)
with i != j. The teacher sees the global views only (indices 0..n_global-1); the student sees the
global views and the local views (appended after them), so view j == i is the same crop and skipped.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class ClHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(max(0, n_layers - 1)):
            layers += [nn.Linear(dim, hidden_dim), nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1, eps=1e-6)
        return z @ F.normalize(self.prototypes, dim=-1, eps=1e-6).t()


def teacher_temperature(step: int, warmup_temp: float, temp: float, warmup_steps: int) -> float:
    """Linear ramp from ``warmup_temp`` to ``temp`` over ``warmup_steps``, then constant."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return temp
    return warmup_temp + (temp - warmup_temp) * step / warmup_steps


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temp: float, iters: int = 3) -> torch.Tensor:
    """Teacher assignments ``[B, K]`` by Sinkhorn-Knopp over the global batch (all ranks).

    Starts from ``exp(logits / temp)`` and alternately rescales the prototypes (columns) to equal
    mass ``1/K`` and the samples (rows) to equal mass ``1/B_total``; rows are returned summing to 1.
    """
    q = logits.float() / temp
    top = q.max().reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = (q - top).exp()                                                # one shift for the whole batch
    b_local, k = q.shape
    b_total = _all_reduce(torch.tensor([float(b_local)], device=q.device)).item()
    q /= _all_reduce(q.sum().reshape(1))
    for _ in range(iters):
        q /= _all_reduce(q.sum(dim=0, keepdim=True)).clamp_min(1e-30)   # columns -> 1/K
        q /= k
        q /= q.sum(dim=1, keepdim=True).clamp_min(1e-30)                # rows -> 1/B
        q /= b_total
    return q * b_total


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo regulariser ``-mean_i log(min_{j != i} ||x_i - x_j||)`` on L2-normalised ``x [B, D]``:
    large when features collapse (neighbours close), small when they spread."""
    if x.shape[0] < 2:
        raise ValueError(f"KoLeo needs at least 2 samples per batch, got {x.shape[0]}")
    z = F.normalize(x.float(), dim=-1, eps=eps)
    with torch.no_grad():
        sim = z @ z.t()
        sim.fill_diagonal_(-2.0)
        nn_idx = sim.argmax(dim=1)
    dist_nn = (z - z[nn_idx]).norm(dim=-1)
    return -(dist_nn + eps).log().mean()


class ClLoss(nn.Module):
    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: str = "ema", sinkhorn_iters: int = 3):
        super().__init__()
        if centering not in ("ema", "sinkhorn"):
            raise ValueError(f"centering {centering!r}: allowed 'ema', 'sinkhorn'")
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = centering
        self.sinkhorn_iters = sinkhorn_iters
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: torch.Tensor, temp: float) -> torch.Tensor:
        """Centred, sharpened teacher distribution (fp32)."""
        if self.centering == "sinkhorn":
            return sinkhorn_knopp(teacher_logits, temp, self.sinkhorn_iters)
        return F.softmax((teacher_logits.float() - self.center) / temp, dim=-1)

    def forward(self, student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor]) -> torch.Tensor:
        total = student_logits[0].new_zeros((), dtype=torch.float32)
        pairs = 0
        logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_logits]
        for i, pt in enumerate(teacher_probs):
            for j, lp in enumerate(logp):
                if i == j:
                    continue
                total = total + (-(pt * lp).sum(dim=-1)).mean()
                pairs += 1
        if pairs == 0:
            raise ValueError("self-distillation needs at least one pair of different views")
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the teacher's batch mean, over the global batch when distributed (EMA centring
        only; Sinkhorn-Knopp keeps no state)."""
        if self.centering != "ema":
            return
        t = teacher_logits.float()
        stats = torch.cat([t.sum(dim=0), t.new_tensor([t.shape[0]])])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        batch_center = (stats[:-1] / stats[-1]).unsqueeze(0)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


@torch.no_grad()
def entropy(probs: torch.Tensor) -> float:
    """Mean entropy (nats) of a batch of distributions."""
    return float(-(probs * probs.clamp_min(1e-12).log()).sum(dim=-1).mean())


@torch.no_grad()
def collapse_monitors(probs: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """Two signs of collapse of the teacher's output, besides its mean entropy:

    - ``teacher_kl_uniform``: KL of the batch-mean teacher distribution to uniform, ``log K - H(mean)``
      (0: every prototype used equally; ``log K``: the whole batch on one prototype);
    - ``teacher_feature_std``: per-dimension std over the batch of the L2-normalised teacher logits,
      times ``sqrt(K)`` (about 1 for spread-out outputs, 0 when all images map to one point).
    """
    k = probs.shape[-1]
    mean = probs.float().mean(0)
    h_mean = float(-(mean * mean.clamp_min(1e-12).log()).sum())
    z = torch.nn.functional.normalize(logits.float(), dim=-1)
    return {"teacher_kl_uniform": math.log(k) - h_mean,
            "teacher_feature_std": float(z.std(0).mean() * math.sqrt(k))}
