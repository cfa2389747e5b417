"""``export``: backbone + head as one deployable model, checked by running it.

The backbone is traced in its export form (``Backbone.export_form``: real-valued RoPE, elementary
RMSNorm and SwiGLU); heads never patch its internals. The output is the task's export form
(``TaskSpec.model_output``: pose heatmaps of the crop, dense maps at the input size).

ONNX: ``torch.onnx.export`` of ``HeadModel`` (input ``image`` [B, 3, H, W] RGB in [0, 1], output
``output``, dynamic batch), then the file is run with onnxruntime (CPU) on a fresh input and compared
with PyTorch. TorchScript: ``torch.jit.trace`` of the same model, saved, loaded back with
``torch.jit.load`` and compared the same way. The input size is fixed to the head's training size
(the traced graphs bake in the patch grid).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from humans.heads.models.model import HeadModel, load_model
from humans.shared.atomic import AtomicFile
from humans.shared.log import get_logger

log = get_logger("heads.export")


def export_friendly(model: HeadModel) -> HeadModel:
    """A copy of ``model`` (evaluation mode) whose backbone is in its export form
    (``Backbone.export_form``: no complex tensors, no custom autograd functions); the head's layers
    trace as they are. The backbone is copied once (by ``export_form``), not twice."""
    backbone = model.extractor.backbone
    return copy.deepcopy(model, {id(backbone): backbone.export_form()}).eval()


def export_onnx(model: HeadModel, path: Path, example: torch.Tensor) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
    with torch.no_grad():
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
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"--format {fmt!r}: allowed onnx, torchscript")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    out_file = AtomicFile(path)
    try:
        if fmt == "onnx":
            export_onnx(model, out_file.tmp, example)
            got = run_onnx(out_file.tmp, check)
        else:
            export_torchscript(model, out_file.tmp, example)
            with torch.no_grad():
                got = torch.jit.load(str(out_file.tmp))(check).numpy()
        with torch.no_grad():
            ref = model(check).numpy()
        diff = float(np.abs(got - ref).max())
        if got.shape != ref.shape or not diff <= atol:
            raise ValueError(f"exported {fmt} model disagrees with PyTorch: shapes {got.shape} vs {ref.shape}, "
                             f"max |diff| {diff:.3g} > {atol:g}")
    except BaseException:
        out_file.abort()
        raise
    out_file.commit()
    log.info("exported %s to %s; max |diff| vs PyTorch %.2e", fmt, path, diff)
    return {"path": str(path), "format": fmt, "max_abs_diff": diff, "shape": list(ref.shape)}
