"""Layers behave as defined: RMSNorm, QK-norm, GQA, RoPE, attention kernels, CLS-guided pooling."""
import pytest
import torch

from humans.shared.backbone import attention_backend as ab
from humans.shared.backbone.layers import _RMSNormFn, Attention, AttnContext, RMSNorm, apply_rope, rope_freqs
from humans.shared.backbone.pooling import CLSGuidedPool


def test_rmsnorm_definition_and_fused_backward():
    norm = RMSNorm(8, eps=1e-6)
    assert isinstance(norm, torch.nn.RMSNorm)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = (torch.randn(3, 5, 8, dtype=torch.float64) * 7 + 1).requires_grad_()
    norm = norm.double()
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    y = norm(x)
    assert torch.allclose(y, ref, atol=1e-10)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, norm.weight), g)
    rx, rw = torch.autograd.grad(ref, (x, norm.weight), g)
    assert torch.allclose(gx, rx, atol=1e-10) and torch.allclose(gw, rw, atol=1e-10)
    assert torch.autograd.gradcheck(lambda a, w: _RMSNormFn.apply(a, w, 1e-6), (x[:1, :2], norm.weight))


def test_qk_norm_gives_unit_rms_heads():
    attn = Attention(32, 4, 2, qk_norm=True)
    x = torch.randn(2, 10, 32) * 5
    ctx = AttnContext(rope_freqs(torch.randint(0, 9, (10, 2)), 8, 100.0)[None, :, None])
    q, k, v = attn.qkv_heads(x, ctx)
    assert q.shape == (2, 4, 10, 8) and k.shape == (2, 2, 10, 8) and v.shape == (2, 2, 10, 8)
    # RMSNorm weights start at one and RoPE is a rotation: every q/k head vector has RMS 1
    assert torch.allclose(q.pow(2).mean(-1), torch.ones(2, 4, 10), atol=1e-4)
    assert torch.allclose(k.pow(2).mean(-1), torch.ones(2, 2, 10), atol=1e-4)
    plain = Attention(32, 4, 2, qk_norm=False)
    assert not torch.allclose(plain.qkv_heads(x, None)[0].pow(2).mean(-1), torch.ones(2, 4, 10), atol=0.1)


def test_rope_is_relative():
    """q.k after RoPE depends only on the offset between the two positions."""
    q, k = torch.randn(16), torch.randn(16)

    def rot(x, p):
        return apply_rope(x.view(1, 1, 16), rope_freqs(torch.tensor([p]), 16, 100.0)[:, None]).view(16)

    def score(pq, pk):
        return (rot(q, pq) * rot(k, pk)).sum()
    assert torch.allclose(score((3, 5), (1, 2)), score((103, 55), (101, 52)), atol=1e-4)
    assert not torch.allclose(score((3, 5), (1, 2)), score((3, 5), (2, 1)), atol=1e-3)
    assert torch.allclose(rot(q, (7, 9)).norm(), q.norm())       # a rotation
    assert torch.equal(rot(q, (0, 0)), q)                         # position 0: identity


def test_gqa_equals_mha_with_repeated_kv_weights():
    dim, heads, kv, hd = 32, 4, 2, 8
    gqa, mha = Attention(dim, heads, kv), Attention(dim, heads, heads)
    with torch.no_grad():
        wq, wk, wv = gqa.qkv.weight.split([heads * hd, kv * hd, kv * hd])
        bq, bk, bv = gqa.qkv.bias.split([heads * hd, kv * hd, kv * hd])
        rep = lambda t: t.view(kv, hd, *t.shape[1:]).repeat_interleave(heads // kv, 0).reshape(heads * hd, *t.shape[1:])  # noqa: E731
        mha.qkv.weight.copy_(torch.cat([wq, rep(wk), rep(wv)]))
        mha.qkv.bias.copy_(torch.cat([bq, rep(bk), rep(bv)]))
        mha.proj.load_state_dict(gqa.proj.state_dict())
    x = torch.randn(2, 12, dim)
    ctx = AttnContext(rope_freqs(torch.randint(0, 5, (12, 2)), hd, 100.0)[None, :, None])
    assert torch.allclose(gqa(x, ctx), mha(x, ctx), atol=1e-6)
    assert sum(p.numel() for p in gqa.parameters()) < sum(p.numel() for p in mha.parameters())


@pytest.mark.parametrize("hkv", [4, 2, 1])
def test_sdpa_matches_reference(hkv):
    q = torch.randn(2, 4, 9, 8)
    k, v = torch.randn(2, hkv, 9, 8), torch.randn(2, hkv, 9, 8)
    mask = torch.rand(2, 1, 9, 9) > 0.3
    mask[..., 0] = True
    assert torch.allclose(ab.attend(q, k, v, backend="sdpa"), ab.reference_attention(q, k, v), atol=1e-5)
    assert torch.allclose(ab.attend(q, k, v, mask, backend="sdpa"),
                          ab.reference_attention(q, k, v, mask), atol=1e-5)
    group = torch.randint(0, 3, (2, 9))
    ref = ab.reference_attention(q, k, v, (group[:, :, None] == group[:, None, :])[:, None])
    assert torch.allclose(ab.attend_groups(q, k, v, group, backend="sdpa"), ref, atol=1e-5)


def test_backend_selection_and_xformers_agreement():
    assert ab.select_backend(True, True) == "xformers"
    assert ab.select_backend(True, False) == "sdpa"
    assert ab.select_backend(False, True) == "sdpa"
    assert ab.select_backend(False, False) == "sdpa"
    assert ab.select_backend(False, False, forced="xformers") == "xformers"
    with pytest.raises(ValueError, match="allowed sdpa, xformers"):
        ab.select_backend(True, True, forced="flash")
    both = ab.xformers_available() and torch.cuda.is_available()
    if not both:                       # this machine: the only runnable path is SDPA
        assert ab.get_backend() == "sdpa"
        return
    dev = "cuda"
    q = torch.randn(2, 8, 300, 64, device=dev)
    k, v = torch.randn(2, 2, 300, 64, device=dev), torch.randn(2, 2, 300, 64, device=dev)
    assert torch.allclose(ab.attend(q, k, v, backend="xformers"), ab.attend(q, k, v, backend="sdpa"),
                          atol=2e-3)
    group = torch.randint(0, 5, (2, 300), device=dev)
    assert torch.allclose(ab.attend_groups(q, k, v, group, backend="xformers"),
                          ab.attend_groups(q, k, v, group, backend="sdpa"), atol=2e-3)


def test_cls_guided_pool_weights():
    pool = CLSGuidedPool(32, 4)
    cls, groups = torch.randn(2, 32), torch.randn(2, 6, 4, 32)
    valid = torch.ones(1, 6, 4, dtype=torch.bool)
    valid[0, 5, 1:] = False                                     # a border cell with 1 real patch
    w, _ = pool.weights(cls, groups, valid)
    assert torch.allclose(w.sum(2), torch.ones(2, 6, 4))
    assert (w[:, 5, 1:] == 0).all()
    out = pool(cls, groups, valid)
    # padding content cannot leak into the pooled cell
    g2 = groups.clone()
    g2[:, 5, 1:] = 1e3
    assert torch.allclose(pool(cls, g2, valid), out)
    # the CLS query steers the weights
    w2, _ = pool.weights(torch.randn(2, 32), groups, valid)
    assert not torch.allclose(w, w2)


def test_swiglu_matches_timm_definition():
    from timm.layers import SwiGLU as TimmSwiGLU

    from humans.shared.backbone.layers import SwiGLU
    ours, ref = SwiGLU(16, 24).double(), TimmSwiGLU(16, 24).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    y, r = ours(x), ref(x)
    assert torch.allclose(y, r, atol=1e-12)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, *ours.parameters()], g)
    want = torch.autograd.grad(r, [x, *ref.parameters()], g)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(got, want))
