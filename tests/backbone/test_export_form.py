"""The backbone's export form (``Backbone.export_form``): the same function written so that tracing
and the ONNX exporter take it (real-valued RoPE, elementary RMSNorm and SwiGLU), left beside the
original without changing it; heads export through it, never by patching backbone internals."""
import inspect

import pytest
import torch

from humans.shared.backbone import build_backbone
from humans.shared.backbone.layers import RMSNorm, SwiGLU, apply_rope, rope_freqs


def test_real_rope_equals_complex_rope():
    pos = torch.randint(0, 9, (1, 7, 2))
    x = torch.randn(1, 7, 4, 16)
    c, r = rope_freqs(pos, 16, 100.0), rope_freqs(pos, 16, 100.0, real=True)
    assert c.is_complex() and not r.is_complex() and r.shape == (*c.shape, 2)
    assert torch.allclose(apply_rope(x, c[:, :, None]), apply_rope(x, r[:, :, None]), atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"num_registers": 2}, {"hierarchical": False}])
def test_export_form_same_outputs_original_untouched(overrides):
    m = build_backbone("sapiens2-tiny", **overrides).eval()
    e = m.export_form()
    assert e is not m and not e.training and e.real_rope and not m.real_rope
    assert all(mod.elementary for mod in e.modules() if isinstance(mod, (RMSNorm, SwiGLU)))
    assert not any(mod.elementary for mod in m.modules() if isinstance(mod, (RMSNorm, SwiGLU)))
    x = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        a, b = m.forward_features(x, [1, -1]), e.forward_features(x, [1, -1])
    for fa, fb in zip(a, b):
        assert torch.allclose(fa, fb, atol=1e-4), float((fa - fb).abs().max())


def test_export_form_traces_without_complex_tensors():
    class LastLayer(torch.nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, t):
            return self.backbone.forward_features(t, [-1])[0]

    e = LastLayer(build_backbone("sapiens2-tiny").export_form()).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(e, (x,), check_trace=False)
        ref = e(x)
    graph = str(traced.graph)
    assert "complex" not in graph and "polar" not in graph and "rms_norm" not in graph
    assert torch.allclose(traced(x), ref, atol=1e-5)


def test_heads_export_does_not_reach_into_the_backbone():
    from humans.heads import export

    src = inspect.getsource(export)
    assert "export_form()" in src
    for word in ("real_rope", "rope_freqs", "apply_rope", "hasattr", "backbone.layers", "nn.RMSNorm", "fc1_g"):
        assert word not in src, word
