"""Attention kernels: xformers' memory-efficient attention on CUDA when xformers imports, PyTorch's
scaled_dot_product_attention (SDPA) otherwise. The choice is made once per process and logged.

All functions take ``q [B, H, Nq, d]`` and ``k, v [B, Hkv, Nk, d]`` (``H`` a multiple of ``Hkv``:
grouped-query attention, query head ``i`` reads key/value head ``i // (H // Hkv)``) and return
``[B, H, Nq, d]``. Set ``HUMANS_ATTN_BACKEND=sdpa|xformers`` to force a backend.
"""
from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn.functional as F

from humans.shared.log import get_logger

_LOG = get_logger("backbone.attention")
_BACKEND: str | None = None
BACKENDS = ("sdpa", "xformers")


def select_backend(xformers_importable: bool, cuda_available: bool, forced: str | None = None) -> str:
    """Pure selection rule: a forced choice wins; xformers needs both the package and CUDA."""
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"HUMANS_ATTN_BACKEND={forced!r}: allowed {', '.join(BACKENDS)}")
        return forced
    return "xformers" if (xformers_importable and cuda_available) else "sdpa"


def xformers_available() -> bool:
    return importlib.util.find_spec("xformers") is not None


def get_backend() -> str:
    """The process-wide backend, chosen (and logged) on first call."""
    global _BACKEND
    if _BACKEND is None:
        has_xf = xformers_available()
        cuda = torch.cuda.is_available()
        _BACKEND = select_backend(has_xf, cuda, os.environ.get("HUMANS_ATTN_BACKEND") or None)
        _LOG.info("attention backend: %s (xformers importable=%s, cuda=%s)", _BACKEND, has_xf, cuda)
    return _BACKEND


def _expand_kv(k: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, Hkv, N, d] -> [B, H, N, d] by repeating each kv head for its query group."""
    hkv = k.shape[1]
    if hkv == heads:
        return k
    b, _, n, d = k.shape
    return k[:, :, None].expand(b, hkv, heads // hkv, n, d).reshape(b, heads, n, d)


def _use_xformers(q: torch.Tensor, backend: str | None) -> bool:
    return (backend or get_backend()) == "xformers" and q.is_cuda


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           backend: str | None = None) -> torch.Tensor:
    """Softmax attention. ``mask`` (bool, True = may attend) broadcasts to [B, H, Nq, Nk].

    Masked calls always go through SDPA (xformers needs aligned bias tensors); unmasked calls use
    the selected backend (xformers only for CUDA tensors).
    """
    heads = q.shape[1]
    k, v = _expand_kv(k, heads), _expand_kv(v, heads)
    if mask is None and _use_xformers(q, backend):
        import xformers.ops as xops
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def attend_groups(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: torch.Tensor,
                  backend: str | None = None) -> torch.Tensor:
    """Attention restricted to tokens of the same group id (``group [B, N]``, q/k/v share N).

    SDPA: a dense block mask from the ids. xformers: tokens are sorted by (sample, group) and run
    as one block-diagonal problem, then put back in their order.
    """
    heads = q.shape[1]
    k, v = _expand_kv(k, heads), _expand_kv(v, heads)
    if _use_xformers(q, backend):
        import xformers.ops as xops
        from xformers.ops.fmha.attn_bias import BlockDiagonalMask
        b, h, n, d = q.shape
        offset = torch.arange(b, device=group.device)[:, None] * (int(group.max()) + 1)
        flat = (group + offset).reshape(-1)
        order = torch.argsort(flat, stable=True)
        _, counts = torch.unique_consecutive(flat[order], return_counts=True)
        bias = BlockDiagonalMask.from_seqlens(counts.tolist())

        def pack(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(1, 2).reshape(b * n, h, d)[order][None]
        out = xops.memory_efficient_attention(pack(q), pack(k), pack(v), attn_bias=bias)[0]
        unsorted = torch.empty_like(out)
        unsorted[order] = out
        return unsorted.reshape(b, n, h, d).transpose(1, 2)
    mask = (group[:, :, None] == group[:, None, :])[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Naive softmax(q k^T / sqrt(d)) v in float64, for tests."""
    heads = q.shape[1]
    k, v = _expand_kv(k, heads).double(), _expand_kv(v, heads).double()
    logits = q.double() @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return (logits.softmax(-1) @ v).to(q.dtype)
