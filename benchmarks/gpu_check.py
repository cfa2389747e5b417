"""GPU check: the CUDA paths proven and the scale figures measured in one short run (< 10 min on one
GPU). Prints one JSON line per figure (``{"figure": ..., ...}``); parts that need CUDA print a line
with ``"skipped"`` and the reason when there is none, so the script runs anywhere.

1. ``attention/*``: xformers vs SDPA outputs and gradients (fp32 and bf16 tolerances) for global,
   windowed (block-diagonal window groups) and GQA layers, and the grouped-kernel path vs the
   explicit K/V repeat. On CPU only the SDPA grouped-vs-repeat part runs.
2. ``pretrain/*``: sapiens2-0.4b MAE pretraining steps (encoder on the kept 25 % of cells, decoder,
   AdamW) in bf16 autocast at 1024x768: images/s, TFLOP/s (FLOPs of one real step counted by
   ``torch.utils.flop_counter`` on the SDPA path) and MFU against the device's dense bf16 peak
   (table below or ``HUMANS_PEAK_TFLOPS``). On CPU a sapiens2-tiny step at 128x96 exercises the
   same code (a smoke run, not a figure).
3. ``memory/4k_*``: peak memory of the 4K (2160x3840) bf16 forward of sapiens2-0.4b, hierarchical
   (windowed early layers, pooled tokens) vs global attention in every layer.

    bash benchmarks/gpu_check.sh                  # or: python benchmarks/gpu_check.py [--steps 10]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import humans.shared.backbone.attention_backend as ab  # noqa: E402
from humans.shared.backbone import build_backbone  # noqa: E402

# dense bf16 peak TFLOP/s (no sparsity) by device-name fragment
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "GH200": 989.0, "B200": 2250.0,
                    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0,
                    "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}
TOL = {torch.float32: dict(atol=2e-4, rtol=2e-3), torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}


def emit(figure: str, **fields: Any) -> dict:
    row = {"figure": figure, **fields}
    print(json.dumps(row), flush=True)
    return row


def device_info() -> dict:
    if not torch.cuda.is_available():
        return {"device": "cpu", "cuda": False}
    name = torch.cuda.get_device_name()
    peak = os.environ.get("HUMANS_PEAK_TFLOPS")
    if peak is None:
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    return {"device": name, "cuda": True, "peak_bf16_tflops": float(peak) if peak else None,
            "torch": torch.__version__}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def _close(a: torch.Tensor, b: torch.Tensor, dtype) -> bool:
    return torch.allclose(a.float(), b.float(), **TOL[dtype])


def _run(fn: Callable, q, k, v, w):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = fn(q, k, v)
    (out.float() * w).sum().backward()
    return out.detach(), [t.grad for t in (q, k, v)]


def check_attention(dev: str) -> list[dict]:
    """Compare kernels on random q/k/v shaped like sapiens2-0.4b layers (16 heads of 64)."""
    rows = []
    has_xf = dev == "cuda" and ab.xformers_available()
    if dev == "cuda" and not has_xf:
        rows.append(emit("attention/xformers", skipped="xformers does not import here"))
    g = torch.Generator(device="cpu").manual_seed(0)
    b, h, d, n = 2, 16, 64, 1024
    win = 64                                                    # tokens per window (8 x 8)
    for dtype in (torch.float32, torch.bfloat16):
        for name, hkv in [("global", 16), ("gqa", 4), ("windowed", 4)]:
            q = torch.randn(b, h, n, d, generator=g).to(dev, dtype)
            k = torch.randn(b, hkv, n, d, generator=g).to(dev, dtype)
            v = torch.randn(b, hkv, n, d, generator=g).to(dev, dtype)
            w = torch.randn(b, h, n, d, generator=g).to(dev)
            if name == "windowed":
                group = (torch.arange(n, device=dev) // win).expand(b, n)
                call = lambda q, k, v, be, rep=False: ab.attend_groups(q, k, v, group, backend=be, repeat_kv=rep)  # noqa: E731
            else:
                call = lambda q, k, v, be, rep=False: ab.attend(q, k, v, backend=be, repeat_kv=rep)  # noqa: E731
            tag = f"{name}/{str(dtype).split('.')[-1]}"
            ref, ref_g = _run(lambda q, k, v: call(q, k, v, "sdpa", True), q, k, v, w)
            if hkv != h:                                        # grouped kernel vs explicit repeat, SDPA
                out, grads = _run(lambda q, k, v: call(q, k, v, "sdpa"), q, k, v, w)
                diffs = [_max_diff(out, ref)] + [_max_diff(a, c) for a, c in zip(grads, ref_g)]
                ok = _close(out, ref, dtype) and all(_close(a, c, dtype) for a, c in zip(grads, ref_g))
                rows.append(emit(f"attention/{tag}/sdpa_grouped_vs_repeat", ok=ok, max_abs_diff_out=diffs[0],
                                 max_abs_diff_grads=max(diffs[1:]), device=dev))
            if has_xf:
                for rep in ((False, True) if hkv != h else (False,)):
                    out, grads = _run(lambda q, k, v: call(q, k, v, "xformers", rep), q, k, v, w)
                    diffs = [_max_diff(out, ref)] + [_max_diff(a, c) for a, c in zip(grads, ref_g)]
                    ok = _close(out, ref, dtype) and all(_close(a, c, dtype) for a, c in zip(grads, ref_g))
                    path = "repeat" if rep else "grouped"
                    rows.append(emit(f"attention/{tag}/xformers_{path}_vs_sdpa", ok=ok, max_abs_diff_out=diffs[0],
                                     max_abs_diff_grads=max(diffs[1:]), tol=TOL[dtype], device=dev))
            elif dev != "cuda" and dtype == torch.float32:
                rows.append(emit(f"attention/{tag}/xformers_vs_sdpa", skipped="needs CUDA (xformers kernels are "
                                 "CUDA-only)"))
    if has_xf:                                                  # memory of the grouped vs repeated path
        q = torch.randn(b, h, 8192, d, device=dev, dtype=torch.bfloat16)
        k = torch.randn(b, 4, 8192, d, device=dev, dtype=torch.bfloat16)
        for rep in (True, False):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            ab.attend(q, k, k, backend="xformers", repeat_kv=rep)
            torch.cuda.synchronize()
            rows.append(emit(f"attention/gqa_peak_extra_mib/{'repeat' if rep else 'grouped'}",
                             value=(torch.cuda.max_memory_allocated() - base) / 2**20, unit="MiB", tokens=8192))
    return rows


def pretrain_steps(dev: str, steps: int, batch: int, info: dict) -> list[dict]:
    """MAE pretraining steps of sapiens2-0.4b at 1024x768 in bf16 (CPU: a tiny smoke run)."""
    from torch.utils.flop_counter import FlopCounterMode

    from humans.pretrain.config import load_train_config
    from humans.pretrain.masking import random_keep
    from humans.pretrain.model import PretrainModel, normalize

    cuda = dev == "cuda"
    name, (hh, ww) = ("sapiens2-0.4b", (1024, 768)) if cuda else ("sapiens2-tiny", (128, 96))
    if not cuda:
        steps, batch = 2, 2
    cfg = load_train_config(None, {"model": name, "objective": "mae", "precision": "bf16" if cuda else "fp32",
                                   "data.shards": "unused", "steps": steps + 2})
    torch.manual_seed(0)
    backbone = build_backbone(name)
    model = PretrainModel(cfg, backbone).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=cuda)
    cell = int(backbone.cell_size)
    n_cells = (hh // cell) * (ww // cell)
    x = normalize(torch.randint(0, 256, (batch, 3, hh, ww), dtype=torch.uint8, device=dev))
    keep, mask = random_keep(batch, n_cells, cfg.mae.mask_ratio, torch.Generator().manual_seed(0), dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = model(x, None, keep, mask, None, None, None)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step()                                                      # warm-up
    backend = ab.get_backend()
    ab._BACKEND = "sdpa"                # the flop counter sees SDPA's attention ops, not xformers'
    try:
        with FlopCounterMode(display=False) as fc:             # FLOPs of one real step
            step()
    finally:
        ab._BACKEND = backend
    flops = fc.get_total_flops()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    common = dict(model=name, input=f"{hh}x{ww}", batch=batch, steps=steps, mask_ratio=cfg.mae.mask_ratio,
                  attention=ab.get_backend(), device=info["device"])
    if not cuda:
        return [emit("pretrain/cpu_smoke", ok=bool(torch.isfinite(loss)), step_s=dt, tflop_per_step=flops / 1e12,
                     note="sapiens2-tiny on CPU to exercise the code; sapiens2-0.4b figures need CUDA", **common),
                emit("pretrain/images_per_s", skipped="needs CUDA (sapiens2-0.4b bf16 at 1024x768)")]
    tflops = flops / dt / 1e12
    peak = info.get("peak_bf16_tflops")
    return [emit("pretrain/images_per_s", value=batch / dt, unit="images/s", **common),
            emit("pretrain/tflops", value=tflops, unit="TFLOP/s", tflop_per_step=flops / 1e12, **common),
            emit("pretrain/mfu", value=(tflops / peak) if peak else None, peak_bf16_tflops=peak, **common),
            emit("pretrain/peak_memory_gib", value=torch.cuda.max_memory_allocated() / 2**30, unit="GiB", **common)]


def memory_4k(dev: str, info: dict) -> list[dict]:
    """Peak memory of one bf16 forward at 2160x3840: hierarchical vs global attention."""
    if dev != "cuda":
        return [emit("memory/4k_forward_peak_gib", skipped="needs CUDA (sapiens2-0.4b bf16 at 2160x3840)")]
    rows, peaks = [], {}
    x = torch.randn(1, 3, 2160, 3840, device=dev)
    for label, over in (("hierarchical", {}), ("global", {"hierarchical": False})):
        model = build_backbone("sapiens2-0.4b", **over).to(dev).eval()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t = time.perf_counter()
        try:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            torch.cuda.synchronize()
            peaks[label] = (torch.cuda.max_memory_allocated() - base) / 2**30
            rows.append(emit(f"memory/4k_forward_peak_gib/{label}", value=peaks[label], unit="GiB (activations "
                             "over the weights)", tokens=out.tokens.shape[1], seconds=time.perf_counter() - t,
                             device=info["device"]))
        except torch.cuda.OutOfMemoryError as exc:
            rows.append(emit(f"memory/4k_forward_peak_gib/{label}", value=None, error=f"out of memory: {exc}"[:200]))
        del model
    if len(peaks) == 2:
        rows.append(emit("memory/4k_global_over_hierarchical", value=peaks["global"] / peaks["hierarchical"]))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed pretraining steps (GPU)")
    ap.add_argument("--batch", type=int, default=8, help="images per pretraining step (GPU)")
    ap.add_argument("--only", choices=("attention", "pretrain", "memory"), action="append",
                    help="run only these parts (repeatable; default all)")
    args = ap.parse_args()
    os.environ.setdefault("HUMANS_NO_PROGRESS", "1")
    info = device_info()
    dev = "cuda" if info["cuda"] else "cpu"
    if dev == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    emit("device", **info)
    if not info["cuda"]:
        emit("note", skipped="no CUDA device: only the CPU-runnable parts run (SDPA grouped vs repeat, "
                             "a tiny pretraining step); the xformers, throughput and 4K memory figures need a GPU")
    parts = args.only or ["attention", "pretrain", "memory"]
    t0 = time.perf_counter()
    rows: list[dict] = []
    if "attention" in parts:
        rows += check_attention(dev)
    if "pretrain" in parts:
        rows += pretrain_steps(dev, args.steps, args.batch, info)
    if "memory" in parts:
        rows += memory_4k(dev, info)
    failed = [r["figure"] for r in rows if r.get("ok") is False]
    emit("summary", checks_failed=failed, seconds=round(time.perf_counter() - t0, 1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
