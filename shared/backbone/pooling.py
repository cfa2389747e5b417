"""CLS-guided token pooling: each stride x stride group of patch tokens becomes one cell token.

For every group the CLS token (after the windowed layers) is the query and the group's tokens are
the keys: per head, softmax weights over the group's tokens mix their values; a projection of the
mixture is added to the mean of the group (so an untrained pool starts near average pooling).
Padding tokens (outside the image) get zero weight and are left out of the mean.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import RMSNorm


class CLSGuidedPool(nn.Module):
    def __init__(self, dim: int, num_heads: int, bias: bool = True, eps: float = 1e-6):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.norm = RMSNorm(dim, eps=eps)
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def weights(self, cls: torch.Tensor, groups: torch.Tensor,
                valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax weights ``[B, C, g, heads]`` over each group and the values ``[B, C, g, heads, d]``."""
        b, c, g, dim = groups.shape
        h, d = self.num_heads, self.head_dim
        q = self.q(self.norm(cls)).view(b, h, d)
        k, v = self.kv(self.norm(groups)).view(b, c, g, 2, h, d).unbind(3)
        logits = torch.einsum("bhd,bcghd->bcgh", q, k) * d ** -0.5
        if valid is not None:
            logits = logits.masked_fill(~valid[..., None], float("-inf"))
        return logits.softmax(dim=2), v

    def forward(self, cls: torch.Tensor, groups: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """cls ``[B, D]``, groups ``[B, C, g, D]``, valid ``[1|B, C, g]`` bool -> ``[B, C, D]``."""
        b, c, g, dim = groups.shape
        w, v = self.weights(cls, groups, valid)
        mixed = torch.einsum("bcgh,bcghd->bchd", w, v).reshape(b, c, dim)
        if valid is None:
            mean = groups.mean(dim=2)
        else:
            vf = valid.to(groups.dtype)[..., None]
            mean = (groups * vf).sum(dim=2) / vf.sum(dim=2)
        return mean + self.proj(mixed)
