"""Building blocks of the backbone: RMSNorm (torch.nn.RMSNorm with a fused CPU backward), SwiGLU
(timm's, with a memory-lean gate), 2D rotary position embedding, attention with QK-norm and
grouped-query attention, and the transformer block.

Attention runs in one of three modes described by an ``AttnContext``:
``global`` (every token attends to every token), ``windows`` (patch tokens are stored window-major
in equal-size windows; each attends inside its window) and ``groups`` (patch tokens carry a group
id, e.g. their window in the MAE ``keep`` path, and attend only to the same id). In the two
windowed modes the special tokens (CLS, registers) attend globally to all valid tokens, while patch
tokens do not attend to the special tokens, so no information crosses windows before pooling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerScale
from timm.layers import SwiGLU as TimmSwiGLU
from torch import nn

from .attention_backend import attend, attend_groups
from .config import BackboneConfig


# --------------------------------------------------------------------------------------------
# normalisation and feed-forward
class _RMSNormFn(torch.autograd.Function):
    """y = x / sqrt(mean(x^2) + eps) * w with a hand-written backward: a few fused passes instead
    of the ~15 element-wise kernels of the composite CPU implementation (about 4x faster on CPU)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        d = x.shape[-1]
        acc = torch.promote_types(x.dtype, torch.float32)
        ms = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=acc).square_().div_(d)
        rstd = ms.add_(eps).rsqrt_().to(x.dtype)
        ctx.save_for_backward(x, weight, rstd)
        return (x * rstd).mul_(weight)

    @staticmethod
    def backward(ctx, g):
        x, weight, rstd = ctx.saved_tensors
        d = x.shape[-1]
        xh = x * rstd
        gw = g * weight
        dx = dw = None
        if ctx.needs_input_grad[0]:
            m = torch.linalg.vecdot(gw, xh, dim=-1).unsqueeze_(-1).div_(d)
            dx = torch.addcmul(gw, xh, m, value=-1).mul_(rstd)
        if ctx.needs_input_grad[1]:
            dw = torch.linalg.vecdot(g.reshape(-1, d), xh.reshape(-1, d), dim=0)
        return dx, dw, None


class RMSNorm(nn.RMSNorm):
    """torch.nn.RMSNorm (same parameters and definition); on CPU runs a fused custom backward.
    ``elementary`` (the export form): written with elementary ops, which tracing and the ONNX
    exporter take (no custom autograd function, no ``aten::rms_norm`` before opset 23)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps=eps, elementwise_affine=True)
        self.elementary = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.elementary:
            eps = self.eps if self.eps is not None else torch.finfo(torch.float32).eps
            y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
            return y * self.weight
        if x.is_cuda or x.dtype != self.weight.dtype:
            return super().forward(x)
        return _RMSNormFn.apply(x, self.weight, self.eps)


class _SiluMulFn(torch.autograd.Function):
    """silu(g) * u keeping only g and u for backward (3 ffn-wide tensors per token instead of 4)."""

    @staticmethod
    def forward(ctx, g, u):
        ctx.save_for_backward(g, u)
        return F.silu(g).mul_(u)

    @staticmethod
    def backward(ctx, grad):
        g, u = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad * u, g), grad * F.silu(g)


class SwiGLU(TimmSwiGLU):
    """timm's SwiGLU (same parameters: fc1_g, fc1_x, fc2) with a memory-lean gate; ``elementary``
    (the export form, evaluation only): the gate without the custom autograd function."""

    elementary = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.elementary:
            return self.fc2(self.norm(F.silu(self.fc1_g(x)) * self.fc1_x(x)))
        h = _SiluMulFn.apply(self.fc1_g(x), self.fc1_x(x))
        return self.drop2(self.fc2(self.norm(self.drop1(h))))


# --------------------------------------------------------------------------------------------
# 2D RoPE
def rope_frequencies(head_dim: int, theta: float, device=None) -> torch.Tensor:
    """head_dim / 4 inverse frequencies per axis (half the rotated pairs for y, half for x)."""
    n = head_dim // 4
    return 1.0 / (theta ** (torch.arange(n, dtype=torch.float32, device=device) / n))


def rope_freqs(pos: torch.Tensor, head_dim: int, theta: float, real: bool = False) -> torch.Tensor:
    """Unit complex rotations ``[..., N, head_dim/2]`` for positions ``pos [..., N, 2]`` (row, col in
    patch units). Channel pair ``(2i, 2i+1)`` turns by ``row * f_i`` for ``i < head_dim/4`` and by
    ``col * f_(i - head_dim/4)`` otherwise, so q.k depends only on the 2D offset. Position (0, 0)
    is the identity (used for the special tokens). ``real`` (the export form: tracing and ONNX take
    no complex tensors): the same rotations as (cos, sin) pairs ``[..., N, head_dim/2, 2]``."""
    f = rope_frequencies(head_dim, theta, pos.device)
    pos = pos.float()
    ang = torch.cat([pos[..., 0:1] * f, pos[..., 1:2] * f], dim=-1)
    if real:
        return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)
    return torch.polar(torch.ones_like(ang), ang)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [..., N, H, d]`` by ``freqs [..., N, 1, d/2]`` (one complex multiply), or by real
    (cos, sin) pairs ``[..., N, 1, d/2, 2]`` (``rope_freqs(real=True)``) with real arithmetic."""
    if not freqs.is_complex():
        xf = x.float().reshape(*x.shape[:-1], -1, 2)
        a, b = xf[..., 0], xf[..., 1]
        c, s = freqs[..., 0], freqs[..., 1]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2).to(x.dtype)
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    xc = torch.view_as_complex(xf.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs).flatten(-2).to(x.dtype)


# --------------------------------------------------------------------------------------------
@dataclass
class AttnContext:
    """How one forward pass attends (shared by all blocks of a stage)."""

    rope: torch.Tensor                # complex [1|B, N, 1, head_dim/2] over all tokens (specials: 1);
                                      # export form: real [1|B, N, 1, head_dim/2, 2]
    num_special: int = 0
    mode: Literal["global", "windows", "groups"] = "global"
    n_windows: int = 1                # windows mode: windows per sample (patch tokens window-major)
    window_valid: torch.Tensor | None = None   # windows mode: [nW, T] bool, None if no padding
    key_valid: torch.Tensor | None = None      # windowed modes: [1|B, M] valid patch tokens
    group: torch.Tensor | None = None          # groups mode: [B, M] group id per patch token


class Attention(nn.Module):
    """Multi-head self-attention with QK-norm (RMSNorm over head_dim), 2D RoPE and GQA."""

    def __init__(self, dim: int, num_heads: int, kv_heads: int, qk_norm: bool = True,
                 bias: bool = True, eps: float = 1e-6):
        super().__init__()
        if num_heads % kv_heads:
            raise ValueError(f"num_heads={num_heads} is not a multiple of kv_heads={kv_heads}")
        self.num_heads, self.kv_heads = num_heads, kv_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, (num_heads + 2 * kv_heads) * self.head_dim, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=bias)

    def qkv_heads(self, x: torch.Tensor, ctx: AttnContext | None):
        """q [B, H, N, d], k/v [B, Hkv, N, d] after QK-norm and RoPE."""
        b, n, _ = x.shape
        h, hkv, d = self.num_heads, self.kv_heads, self.head_dim
        q, k, v = self.qkv(x).view(b, n, h + 2 * hkv, d).split([h, hkv, hkv], dim=2)
        q, k = self.q_norm(q), self.k_norm(k)
        if ctx is not None:
            q, k = apply_rope(q, ctx.rope), apply_rope(k, ctx.rope)
        q, k = q.to(v.dtype), k.to(v.dtype)     # autocast may run the norms in float32
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: torch.Tensor, ctx: AttnContext | None = None) -> torch.Tensor:
        b, n, dim = x.shape
        q, k, v = self.qkv_heads(x, ctx)
        if ctx is None or ctx.mode == "global":
            out = attend(q, k, v)
        else:
            out = self._windowed(q, k, v, ctx)
        return self.proj(out.transpose(1, 2).reshape(b, n, dim))

    @staticmethod
    def _windowed(q, k, v, ctx: AttnContext) -> torch.Tensor:
        s = ctx.num_special
        b, h, n, d = q.shape
        parts = []
        if s:
            mask = None
            if ctx.key_valid is not None:
                kv = ctx.key_valid
                mask = torch.cat([kv.new_ones(kv.shape[0], s), kv], dim=1)[:, None, None, :]
            parts.append(attend(q[:, :, :s], k, v, mask))
        qp, kp, vp = q[:, :, s:], k[:, :, s:], v[:, :, s:]
        m = n - s
        if ctx.mode == "windows":
            nw = ctx.n_windows
            t = m // nw

            def win(x: torch.Tensor) -> torch.Tensor:
                return x.reshape(b, x.shape[1], nw, t, d).transpose(1, 2).reshape(b * nw, x.shape[1], t, d)
            mask = None
            if ctx.window_valid is not None:
                mask = ctx.window_valid.repeat(b, 1)[:, None, None, :]
            o = attend(win(qp), win(kp), win(vp), mask)
            parts.append(o.reshape(b, nw, h, t, d).transpose(1, 2).reshape(b, h, m, d))
        else:
            parts.append(attend_groups(qp, kp, vp, ctx.group))
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]


class Block(nn.Module):
    """Pre-norm transformer block: RMSNorm -> attention -> LayerScale, RMSNorm -> SwiGLU."""

    def __init__(self, cfg: BackboneConfig, kv_heads: int, drop_path: float = 0.0):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = RMSNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, kv_heads, cfg.qk_norm, cfg.bias, cfg.norm_eps)
        self.ls1 = LayerScale(dim, cfg.layerscale_init) if cfg.layerscale_init else nn.Identity()
        self.norm2 = RMSNorm(dim, eps=cfg.norm_eps)
        self.mlp = SwiGLU(dim, cfg.ffn_dim, bias=cfg.bias)
        ls2 = cfg.layerscale_init and cfg.layerscale_mlp
        self.ls2 = LayerScale(dim, cfg.layerscale_init) if ls2 else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, ctx: AttnContext | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), ctx)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
