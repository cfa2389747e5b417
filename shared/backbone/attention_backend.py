"""Attention kernels: xformers' memory-efficient attention on CUDA when xformers imports, PyTorch's
scaled_dot_product_attention (SDPA) otherwise. The choice is made once per process and logged.

All functions take ``q [B, H, Nq, d]`` and ``k, v [B, Hkv, Nk, d]`` (``H`` a multiple of ``Hkv``:
grouped-query attention, query head ``i`` reads key/value head ``i // (H // Hkv)``) and return
``[B, H, Nq, d]``. Set ``HUMANS_ATTN_BACKEND=sdpa|xformers`` to force a backend.

Grouped-query attention runs on the grouped kernels, without materialising the repeated K/V:
SDPA with ``enable_gqa=True`` (native in the CUDA flash kernel; PyTorch's CPU/math fallback
repeats internally), xformers with its 5-D ``[B, N, G, H/G, d]`` layout where K/V are broadcast
along the heads of a group (stride 0, no copy). ``repeat_kv=True`` selects the old explicit
repeat, kept as the reference path the tests and ``benchmarks/gpu_check.py`` compare against.
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


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA over grouped K/V: ``enable_gqa`` when the head counts differ (the ONNX exporter has no
    conversion for it, so an export repeats K/V explicitly)."""
    if k.shape[1] != q.shape[1] and torch.onnx.is_in_onnx_export():
        k, v = _expand_kv(k, q.shape[1]), _expand_kv(v, q.shape[1])
    if k.shape[1] == q.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def _xformers_layout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """``[B, H, N, d]`` q and ``[B, Hkv, N, d]`` k/v -> xformers tensors: BMHK when H == Hkv, else
    BMGHK ``[B, N, Hkv, H/Hkv, d]`` with K/V expanded along the group's heads (a stride-0 view)."""
    b, h, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if hkv == h:
        return q, k, v
    rep = h // hkv
    q = q.reshape(b, nq, hkv, rep, d)
    k = k[:, :, :, None].expand(b, nk, hkv, rep, d)
    v = v[:, :, :, None].expand(b, nk, hkv, rep, d)
    return q, k, v


def _from_xformers(out: torch.Tensor, b: int, h: int) -> torch.Tensor:
    """xformers output (BMHK or BMGHK) -> ``[B, H, N, d]``."""
    return out.reshape(b, out.shape[1], h, out.shape[-1]).transpose(1, 2)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           backend: str | None = None, repeat_kv: bool = False) -> torch.Tensor:
    """Softmax attention. ``mask`` (bool, True = may attend) broadcasts to [B, H, Nq, Nk].

    Masked calls always go through SDPA (xformers needs aligned bias tensors); unmasked calls use
    the selected backend (xformers only for CUDA tensors). GQA uses the grouped kernels unless
    ``repeat_kv`` (the reference path: K/V repeated to every query head first).
    """
    heads = q.shape[1]
    if repeat_kv:
        k, v = _expand_kv(k, heads), _expand_kv(v, heads)
    if mask is None and _use_xformers(q, backend):
        import xformers.ops as xops
        out = xops.memory_efficient_attention(*_xformers_layout(q, k, v))
        return _from_xformers(out, q.shape[0], heads)
    return _sdpa(q, k, v, mask)


def attend_groups(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: torch.Tensor,
                  backend: str | None = None, repeat_kv: bool = False) -> torch.Tensor:
    """Attention restricted to tokens of the same group id (``group [B, N]``, q/k/v share N).

    SDPA: a dense block mask from the ids. xformers: tokens are sorted by (sample, group) and run
    as one block-diagonal problem, then put back in their order. GQA as in ``attend``.
    """
    heads = q.shape[1]
    if repeat_kv:
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

        def pack(t: torch.Tensor) -> torch.Tensor:      # [B, H', N, d] -> [1, B*N, H', d] in group order
            return t.transpose(1, 2).reshape(b * n, t.shape[1], d)[order][None].transpose(1, 2)
        out = xops.memory_efficient_attention(*_xformers_layout(pack(q), pack(k), pack(v)), attn_bias=bias)
        out = _from_xformers(out, 1, h)[0].transpose(0, 1)          # [B*N, H, d] in group order
        unsorted = torch.empty_like(out)
        unsorted[order] = out
        return unsorted.reshape(b, n, h, d).transpose(1, 2)
    mask = (group[:, :, None] == group[:, None, :])[:, None]
    return _sdpa(q, k, v, mask)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Naive softmax(q k^T / sqrt(d)) v in float64, for tests."""
    heads = q.shape[1]
    k, v = _expand_kv(k, heads).double(), _expand_kv(v, heads).double()
    logits = q.double() @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return (logits.softmax(-1) @ v).to(q.dtype)
