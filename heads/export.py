"""``export``: backbone + head as one deployable model, checked by running it.

ONNX: ``torch.onnx.export`` of ``HeadModel`` (input ``image`` [B, 3, H, W] RGB in [0, 1], output
``output``, dynamic batch), then the file is run with onnxruntime (CPU) on a fresh input and compared
with PyTorch. TorchScript: ``torch.jit.trace`` of the same model, saved, loaded back with
``torch.jit.load`` and compared the same way. The input size is fixed to the head's training size
(the traced graphs bake in the patch grid).
"""
from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from humans.heads.models.model import HeadModel, load_model
from humans.shared.log import get_logger

log = get_logger("heads.export")


class _RMSNorm(nn.Module):
    """nn.RMSNorm written with elementary ops (the ONNX exporter has no aten::rms_norm before opset 23)."""

    def __init__(self, src: nn.RMSNorm):
        super().__init__()
        self.eps = src.eps if src.eps is not None else torch.finfo(torch.float32).eps
        self.dims = tuple(range(-len(src.normalized_shape), 0))
        self.weight = src.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * torch.rsqrt(x.pow(2).mean(dim=self.dims, keepdim=True) + self.eps)
        return y * self.weight if self.weight is not None else y


def _real_rope_freqs(pos: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """Like ``shared.backbone.layers.rope_freqs`` but as real (cos, sin) pairs [..., N, d/2, 2]."""
    from humans.shared.backbone.layers import rope_frequencies

    f = rope_frequencies(head_dim, theta, pos.device)
    pos = pos.float()
    ang = torch.cat([pos[..., 0:1] * f, pos[..., 1:2] * f], dim=-1)
    return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)


def _real_apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """The complex multiply of ``apply_rope`` written with real arithmetic."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = xf[..., 0], xf[..., 1]
    c, s = freqs[..., 0], freqs[..., 1]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2).to(x.dtype)


@contextlib.contextmanager
def real_rope():
    """Trace-time swap of the backbone's complex-number RoPE for real arithmetic (neither the ONNX
    exporter nor TorchScript handle complex tensors). Only applied when the backbone has that form;
    the export is checked against the unpatched PyTorch model afterwards in any case."""
    try:
        from humans.shared.backbone import layers, model
    except ImportError:
        yield
        return
    if not (hasattr(layers, "rope_freqs") and hasattr(layers, "apply_rope") and hasattr(model, "rope_freqs")
            and hasattr(layers, "rope_frequencies")):
        yield
        return
    saved = (layers.rope_freqs, layers.apply_rope, model.rope_freqs)
    layers.rope_freqs, layers.apply_rope, model.rope_freqs = _real_rope_freqs, _real_apply_rope, _real_rope_freqs
    try:
        yield
    finally:
        layers.rope_freqs, layers.apply_rope, model.rope_freqs = saved


class _PlainSwiGLU(nn.Module):
    """A SwiGLU (timm layout: fc1_g, fc1_x, norm, fc2) without custom autograd functions."""

    def __init__(self, src: nn.Module):
        super().__init__()
        self.fc1_g, self.fc1_x, self.fc2 = src.fc1_g, src.fc1_x, src.fc2
        self.norm = getattr(src, "norm", nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(torch.nn.functional.silu(self.fc1_g(x)) * self.fc1_x(x)))


def export_friendly(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (eval mode) with modules that tracing/ONNX cannot take (custom autograd
    functions, ``aten::rms_norm``) replaced by equivalents written with elementary ops."""
    model = copy.deepcopy(model).eval()
    for _, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.RMSNorm):
                setattr(mod, child_name, _RMSNorm(child))
            elif all(hasattr(child, a) for a in ("fc1_g", "fc1_x", "fc2")):
                setattr(mod, child_name, _PlainSwiGLU(child))
    return model


def export_onnx(model: HeadModel, path: Path, example: torch.Tensor) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with real_rope():
            torch.onnx.export(export_friendly(model), (example,), str(path), input_names=["image"],
                              output_names=["output"], dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
                              opset_version=17, dynamo=False)


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x.numpy()})[0]


def export_torchscript(model: HeadModel, path: Path, example: torch.Tensor) -> None:
    with torch.no_grad(), real_rope():
        traced = torch.jit.trace(export_friendly(model), (example,), check_trace=False)
    traced.save(str(path))


def run_export(checkpoint: str, out: str, fmt: str = "onnx", task: str | None = None, backbone: str | None = None,
               atol: float = 1e-3, model: HeadModel | None = None) -> dict:
    """Export and verify; raises ``ValueError`` when the exported model disagrees beyond ``atol``."""
    model = model or load_model(checkpoint, backbone)
    if task and task != model.config.task:
        raise ValueError(f"--task {task} but {checkpoint} is a {model.config.task} head")
    model.eval()
    h, w = model.config.size
    g = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, h, w, generator=g)
    check = torch.rand(2, 3, h, w, generator=g)  # another input and batch size than the trace
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    if fmt == "onnx":
        export_onnx(model, tmp, example)
        got = run_onnx(tmp, check)
    elif fmt == "torchscript":
        export_torchscript(model, tmp, example)
        with torch.no_grad():
            got = torch.jit.load(str(tmp))(check).numpy()
    else:
        raise ValueError(f"--format {fmt!r}: allowed onnx, torchscript")
    with torch.no_grad():
        ref = model(check).numpy()
    diff = float(np.abs(got - ref).max())
    if got.shape != ref.shape or not diff <= atol:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"exported {fmt} model disagrees with PyTorch: shapes {got.shape} vs {ref.shape}, "
                         f"max |diff| {diff:.3g} > {atol:g}")
    os.replace(tmp, path)
    log.info("exported %s to %s; max |diff| vs PyTorch %.2e", fmt, path, diff)
    return {"path": str(path), "format": fmt, "max_abs_diff": diff, "shape": list(ref.shape)}
