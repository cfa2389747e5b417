"""Backbone benchmark, side by side in one run.

1. Our ViT against timm's VisionTransformer of the same width and depth: forward+backward time and
   peak memory (ratio ours / timm; target <= 1.0).
2. Hierarchical (windowed layers + CLS-guided pooling) against plain global attention at 1024x768
   and 3840x2160 (time and memory ratios).
3. On a GPU only: bf16 training throughput and model FLOPs utilisation of sapiens2-0.4b at 1024x768.

Times: the models of one comparison are built in one process and timed round by round, interleaved,
after a warm-up; the minimum over rounds is compared (robust on a shared machine), the median shown.
Memory: each model runs in a fresh subprocess; after a small warm-up pass (64x64, loads kernels and
code pages) the peak is the process's peak resident set growth during forward+backward (``resource``
ru_maxrss minus the psutil RSS just before the pass), with ``MALLOC_MMAP_THRESHOLD_=65536`` so that
RSS follows live tensors instead of glibc's retained heap.
On CUDA the peak is ``torch.cuda.max_memory_allocated``.

    python benchmarks/backbone_bench.py               # CPU: several minutes on 2 cores
    python benchmarks/backbone_bench.py --quick       # smaller sizes, a smoke run
    python benchmarks/backbone_bench.py --out benchmarks/results/backbone_raw.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# glibc keeps freed heap memory and reuses it, which hides part of a later peak from RSS; with a low
# mmap threshold every tensor-sized block is mapped and unmapped, so RSS follows live memory.
WORKER_ENV = {"HUMANS_LOG_LEVEL": "WARNING", "MALLOC_MMAP_THRESHOLD_": "65536"}
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12,
             "4090": 165e12}


# ------------------------------------------------------------------------------------------------
def _build(spec: dict, dev):
    import torch
    torch.manual_seed(0)
    if spec["kind"] == "timm":
        import timm.models.vision_transformer as tv
        model = tv.VisionTransformer(img_size=spec["hw"], patch_size=16, embed_dim=spec["dim"],
                                     depth=spec["depth"], num_heads=spec["heads"], mlp_ratio=4.0,
                                     num_classes=0, dynamic_img_size=True)

        def loss_fn(x):
            return model.forward_features(x).float().square().mean()
    else:
        from humans.shared.backbone import build_backbone
        model = build_backbone(spec["name"], **spec.get("overrides", {}))

        def loss_fn(x):
            out = model(x)
            return out.tokens.float().square().mean() + out.cls.float().square().mean()
    model.to(dev).train()
    if spec.get("checkpointing"):
        model.set_grad_checkpointing(True)
    cuda = dev.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    x = torch.randn(spec["batch"], 3, *spec["hw"], device=dev)

    def step():
        with amp:
            loss = loss_fn(x)
        loss.backward()
        model.zero_grad(set_to_none=False)
    return model, step


def _timed(step, cuda: bool) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one step."""
    import torch
    if cuda:
        torch.cuda.synchronize()
    c0, t0 = time.process_time(), time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def _summary(times: list[tuple[float, float]]) -> dict:
    wall, cpu = [t[0] for t in times], [t[1] for t in times]
    return {"min_s": min(wall), "median_s": statistics.median(wall), "cpu_s": min(cpu)}


def _time_worker(job: dict) -> list[dict]:
    """Time several models in one process, interleaved round by round (fair under shared load)."""
    import torch
    torch.set_num_threads(job["threads"])
    dev = torch.device("cpu")
    steps = [_build(spec, dev)[1] for spec in job["specs"]]
    times: list[list[tuple[float, float]]] = [[] for _ in steps]
    for step in steps:
        step()                                              # warm-up
    for _ in range(job["reps"]):
        for i, step in enumerate(steps):
            times[i].append(_timed(step, False))
    return [_summary(t) for t in times]


def _mem_worker(spec: dict) -> dict:
    """Peak memory (and time) of ``reps`` forward+backward passes of one model in a fresh process."""
    import psutil
    import torch
    torch.set_num_threads(spec["threads"])
    cuda = spec.get("device") == "cuda"
    dev = torch.device("cuda" if cuda else "cpu")
    small = {**spec, "hw": (64, 64), "batch": 1}
    _build(small, dev)[1]()                 # load kernels and code pages before the baseline
    model, step = _build(spec, dev)
    params = sum(p.numel() for p in model.parameters())
    base_rss = psutil.Process().memory_info().rss
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    for _ in range(spec.get("warmup", 0)):
        step()
    times = [_timed(step, cuda) for _ in range(spec.get("reps", 1))]
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base_cuda
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    out = {**_summary(times), "peak_mib": peak / 2 ** 20, "params": params}
    if spec.get("saved"):
        out["saved_mib"] = _saved_activations(model, spec, dev)
    return out


def _saved_activations(model, spec: dict, dev) -> float:
    """MiB of distinct non-parameter tensors autograd keeps for backward (exact, allocator-free)."""
    import torch
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t
    x = torch.randn(spec["batch"], 3, *spec["hw"], device=dev)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if spec["kind"] == "timm":
            loss = model.forward_features(x).float().square().mean()
        else:
            out = model(x)
            loss = out.tokens.float().square().mean() + out.cls.float().square().mean()
    loss.backward()
    return sum(seen.values()) / 2 ** 20


def _sub(kind: str, payload) -> object:
    proc = subprocess.run([sys.executable, __file__, f"--{kind}", json.dumps(payload)], capture_output=True,
                          text=True, timeout=3600, env={**os.environ, **WORKER_ENV})
    if proc.returncode:
        raise RuntimeError(f"{kind} worker failed for {payload}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_memory(spec: dict) -> dict:
    return _sub("mem-worker", spec)


def measure_times(specs: list[dict], threads: int, reps: int) -> list[dict]:
    return _sub("time-worker", {"specs": specs, "threads": threads, "reps": reps})


# ------------------------------------------------------------------------------------------------
def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()} ({cpu}), {gpu}, torch {torch.__version__}"


def fmt_row(cols, widths):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cols, widths)) + " |"


def table(header, rows) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = [fmt_row(header, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(lines + [fmt_row(r, widths) for r in rows])


def section_timm(args) -> str:
    dim, depth, heads, hw, batch = (192, 6, 3, (224, 224), 2) if args.quick else (384, 12, 6, (224, 224), 2)
    common = {"threads": args.threads, "hw": hw, "batch": batch}
    base = dict(embed_dim=dim, depth=depth, num_heads=heads, kv_heads=heads, layerscale_init=None)
    variants = [
        ("timm VisionTransformer (LayerNorm, GELU MLP 4x, learned pos. emb.)",
         {"kind": "timm", "dim": dim, "depth": depth, "heads": heads}),
        ("ours, plain global (hierarchy off), SwiGLU 8/3x = same FLOPs",
         {"kind": "ours", "name": "sapiens2-small",
          "overrides": {**base, "hierarchical": False, "ffn_dim": dim * 8 // 3}}),
        (f"ours, hierarchical ({depth // 4} windowed layers, window 8, stride 2), SwiGLU 8/3x",
         {"kind": "ours", "name": "sapiens2-small",
          "overrides": {**base, "hierarchical": True, "window_layers": depth // 4, "window_size": 8,
                        "ffn_dim": dim * 8 // 3}}),
        ("ours, family setting (hierarchical, SwiGLU 4x, GQA 1/3 of heads, LayerScale)",
         {"kind": "ours", "name": "sapiens2-small",
          "overrides": {"embed_dim": dim, "depth": depth, "num_heads": heads, "kv_heads": heads // 3,
                        "ffn_dim": 4 * dim, "window_layers": depth // 4}}),
    ]
    specs = [{**common, **spec, "saved": True} for _, spec in variants]
    times = measure_times(specs, args.threads, args.reps)
    rows, ref = [], None
    for (label, _), spec, t in zip(variants, specs, times):
        r = {**measure_memory(spec), **t}
        ref = ref or r
        print(f"  {label}: {r}", flush=True)
        rows.append([label, f"{r['params'] / 1e6:.1f}M", f"{r['cpu_s']:.3f}", f"{r['min_s']:.3f}",
                     f"{r['peak_mib']:.0f}", f"{r['saved_mib']:.0f}", f"{r['cpu_s'] / ref['cpu_s']:.2f}",
                     f"{r['min_s'] / ref['min_s']:.2f}", f"{r['peak_mib'] / ref['peak_mib']:.2f}",
                     f"{r['saved_mib'] / ref['saved_mib']:.2f}"])
    head = ["model", "params", "CPU s", "wall s", "peak MiB", "saved act. MiB", "CPU time / timm",
            "wall / timm", "peak mem / timm", "saved act. / timm"]
    return (f"### 1. Ours vs timm ViT: width {dim}, depth {depth}, heads {heads}, {hw[0]}x{hw[1]}, "
            f"batch {batch}, fp32, {args.threads} thread(s), forward+backward\n\nTimes: one process, "
            f"models interleaved round by round, {args.reps} rounds after a warm-up, minimum per model; "
            "CPU s = process CPU time (robust when other jobs share the cores), wall s = elapsed. "
            "Memory: one fresh process per model; peak MiB = peak RSS growth over one forward+backward "
            "(includes the parameter gradients allocated in backward); saved act. = distinct tensors "
            "autograd keeps for backward (exact, via saved_tensors_hooks).\n\n" + table(head, rows))


def section_hier(args) -> str:
    # the -4k scheme (window 4x4 patches, CLS-guided pooling stride 4, windowed layers in front of the
    # 1K model's global layers; 8 registers, normalised RoPE) against the plain global 1K model, both
    # at width 32 so that global attention over 32,400 tokens finishes on a CPU: 3 global layers,
    # and for the -4k variant 2 windowed layers in front (sapiens2-0.4b-4k: 2 + 24)
    thin = dict(embed_dim=32, num_heads=1, kv_heads=1, ffn_dim=128, mha_edge=0, layerscale_init=None)
    models = [("sapiens2-0.4b", {**thin, "depth": 3}),
              ("sapiens2-0.4b-4k", {**thin, "depth": 5, "window_layers": 2})]
    from humans.shared.backbone import count_flops, get_config
    sizes = [(512, 384), (1024, 768)] if args.quick else [(1024, 768), (2160, 3840)]
    rows = []
    for hw in sizes:
        big = hw[0] * hw[1] > 4e6
        specs = [{"kind": "ours", "name": n, "overrides": o, "threads": args.threads, "hw": hw, "batch": 1}
                 for n, o in models]
        # 4K: a single forward+backward per model (time and memory from the same process)
        mems = [measure_memory(s) for s in specs]
        times = mems if big else measure_times(specs, args.threads, args.reps)
        g, h = ({**m, **t} for m, t in zip(mems, times))
        print(f"  {hw} global {g}\n  {hw} hierarchical {h}", flush=True)
        fl = [count_flops(get_config(n, **o), *hw) for n, o in models]
        rows.append([f"{hw[1]}x{hw[0]}", f"{g['cpu_s']:.2f}", f"{h['cpu_s']:.2f}",
                     f"{h['cpu_s'] / g['cpu_s']:.3f}", f"{h['min_s'] / g['min_s']:.3f}",
                     f"{g['peak_mib']:.0f}", f"{h['peak_mib']:.0f}", f"{h['peak_mib'] / g['peak_mib']:.3f}",
                     f"{fl[1] / fl[0]:.3f}"])
    head = ["input WxH", "global CPU s", "hier CPU s", "CPU time hier/global", "wall hier/global",
            "global MiB", "hier MiB", "memory hier/global", "FLOPs hier/global"]
    return ("### 2. Hierarchical (-4k) vs global (1K) attention: sapiens2-0.4b-4k's scheme (2 windowed "
            "layers, window 4x4 patches, CLS-guided pooling stride 4, then the global layers) vs the plain "
            "sapiens2-0.4b, both at width 32 (1 head), 3 global layers, 8 registers; batch 1, fp32, "
            f"forward+backward, {args.threads} thread(s). 1024x768: minimum of {args.reps} interleaved "
            "rounds; 3840x2160: one pass per model, no warm-up. FLOPs from count_flops.\n\n"
            + table(head, rows))


def section_gpu(args) -> str:
    import torch
    if not torch.cuda.is_available():
        return ("### 3. GPU bf16 throughput / MFU of sapiens2-0.4b at 1024x768\n\n"
                "not measured: no GPU in this run.")
    from humans.shared.backbone import count_flops
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    rows = []
    for batch in (4, 8):
        spec = {"kind": "ours", "name": "sapiens2-0.4b", "threads": args.threads, "hw": (1024, 768),
                "batch": batch, "warmup": 2, "reps": 5, "device": "cuda"}
        r = measure_memory(spec)
        ips = batch / r["median_s"]
        flops = 3 * count_flops("sapiens2-0.4b", 1024, 768) * ips
        mfu = f"{flops / peak:.1%}" if peak else "unknown peak"
        rows.append([batch, f"{ips:.1f}", f"{flops / 1e12:.1f}", mfu, f"{r['peak_mib'] / 1024:.1f}"])
    head = ["batch", "images/s", "model TFLOP/s", "MFU", "peak GiB"]
    return (f"### 3. GPU bf16 training throughput of sapiens2-0.4b at 1024x768 ({name})\n\n"
            "Model FLOPs = 3 x forward FLOPs of shared.backbone.count_flops.\n\n" + table(head, rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes for a fast smoke run")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads per measurement (default 1: on a shared machine extra threads "
                         "spin-wait and penalise models with many small kernels)")
    ap.add_argument("--reps", type=int, default=3, help="timed rounds after the warm-up (minimum compared, median shown; default 3)")
    ap.add_argument("--sections", default="timm,hier,gpu", help="comma list of timm,hier,gpu")
    ap.add_argument("--out", default=None, help="also write the markdown tables to this file")
    ap.add_argument("--mem-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--time-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_worker or args.time_worker:
        from humans.shared.runtime import setup_runtime
        setup_runtime()
        out = _mem_worker(json.loads(args.mem_worker)) if args.mem_worker else _time_worker(json.loads(args.time_worker))
        print(json.dumps(out))
        return
    from humans.shared.runtime import setup_runtime
    setup_runtime()
    parts = [f"Machine: {machine()}. Peak memory: "
             "CPU = peak RSS growth of a fresh process over one forward+backward (resource ru_maxrss "
             "- psutil RSS just before it, after a 64x64 warm-up pass, glibc MALLOC_MMAP_THRESHOLD_=65536); GPU = torch.cuda.max_memory_allocated."]
    t0 = time.time()
    funcs = {"timm": section_timm, "hier": section_hier, "gpu": section_gpu}
    for key in args.sections.split(","):
        print(f"[{key}] ...", flush=True)
        parts.append(funcs[key](args))
    text = "\n\n".join(parts) + f"\n\n(total {time.time() - t0:.0f} s)\n"
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
