"""Grouped-query attention runs on the grouped kernels (SDPA ``enable_gqa``; xformers' 5-D layout on
GPU) without repeating K/V in our code, and agrees with the explicit-repeat path: outputs and
gradients, for global, masked (windowed) and group-restricted attention, and through a whole backbone."""
from __future__ import annotations

import functools

import pytest
import torch

import humans.shared.backbone.attention_backend as ab
import humans.shared.backbone.layers as layers
from humans.shared.backbone import build_backbone


def _qkv(seed: int, b=2, h=6, hkv=2, n=20, d=8):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(b, hkv, n, d, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(b, hkv, n, d, generator=g, dtype=torch.float64, requires_grad=True)
    return q, k, v


def _grads(fn, q, k, v, weight):
    out = fn(q, k, v)
    q.grad = k.grad = v.grad = None
    (out * weight).sum().backward()
    return out.detach(), [t.grad.clone() for t in (q, k, v)]


@pytest.mark.parametrize("kind", ["global", "masked", "groups"])
def test_grouped_kernels_match_repeat_path(kind, monkeypatch):
    q, k, v = _qkv(0)
    weight = torch.randn(q.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    n = q.shape[2]
    mask = torch.rand(2, 1, n, n, generator=torch.Generator().manual_seed(2)) < 0.6
    mask |= torch.eye(n, dtype=torch.bool)                      # every query sees at least itself
    group = torch.randint(0, 3, (2, n), generator=torch.Generator().manual_seed(3))
    call = {"global": lambda q, k, v, **kw: ab.attend(q, k, v, backend="sdpa", **kw),
            "masked": lambda q, k, v, **kw: ab.attend(q, k, v, mask, backend="sdpa", **kw),
            "groups": lambda q, k, v, **kw: ab.attend_groups(q, k, v, group, backend="sdpa", **kw)}[kind]
    ref_out, ref_grads = _grads(functools.partial(call, repeat_kv=True), q, k, v, weight)

    def no_repeat(*_a, **_k):
        raise AssertionError("K/V repeated on the grouped path")
    monkeypatch.setattr(ab, "_expand_kv", no_repeat)
    out, grads = _grads(call, q, k, v, weight)
    assert out.shape == q.shape
    assert torch.allclose(out, ref_out, atol=1e-12, rtol=0)
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape and torch.allclose(g, r, atol=1e-12, rtol=0)
    # and both agree with the naive float64 softmax attention
    monkeypatch.undo()
    m = {"global": None, "masked": mask, "groups": (group[:, :, None] == group[:, None, :])[:, None]}[kind]
    assert torch.allclose(out, ab.reference_attention(q, k, v, m), atol=1e-10)


def test_xformers_layout_is_a_stride0_view():
    q, k, v = (t.detach() for t in _qkv(4))
    xq, xk, xv = ab._xformers_layout(q, k, v)
    assert xq.shape == (2, 20, 2, 3, 8) and xk.shape == (2, 20, 2, 3, 8)
    assert xk.stride(3) == 0 and xv.stride(3) == 0                # broadcast, not copied
    assert xk.untyped_storage().data_ptr() == k.untyped_storage().data_ptr()
    # query head i of group i // 3 reads kv head i // 3, as in the repeat path
    rep = ab._expand_kv(k, 6).transpose(1, 2).reshape(2, 20, 2, 3, 8)
    assert torch.equal(xk, rep)
    assert torch.equal(ab._from_xformers(xq.contiguous(), 2, 6), q)


def test_backbone_forward_backward_same_with_grouped_kernels(monkeypatch):
    torch.manual_seed(0)
    model = build_backbone("sapiens2-tiny").double()            # 4 query heads over 2 kv heads
    assert model.config.kv_heads < model.config.num_heads
    x = torch.randn(2, 3, 96, 96, dtype=torch.float64)

    def run():
        model.zero_grad()
        out = model(x)
        (out.cls.square().sum() + out.tokens.square().mean()).backward()
        return out.cls.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    cls, grads = run()
    monkeypatch.setattr(layers, "attend", functools.partial(ab.attend, repeat_kv=True))
    monkeypatch.setattr(layers, "attend_groups", functools.partial(ab.attend_groups, repeat_kv=True))
    ref_cls, ref_grads = run()
    assert torch.allclose(cls, ref_cls, atol=1e-10)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert torch.allclose(grads[name], ref_grads[name], atol=1e-9), name
