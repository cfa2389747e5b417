"""Pretraining throughput: images/s and peak memory per training step, input pipeline alone vs the
full step, measured side by side in one run.

CPU section (always): tiny config (sapiens2-tiny, default views: 2 x 224 px global + N x 96 px
local, MAE + CL) on shards of real photos (scikit-image, native size ~512 px) or ``--shards``.
  1. data alone      : the shard -> decode -> views -> batch pipeline with W workers, no model
  2. compute alone   : train steps on one cached batch (no input pipeline)
  3. full step       : train steps fed by the pipeline (W workers), data wait measured
The input pipeline is not the bottleneck when (1) delivers more images/s than (3) consumes and the
data wait is a small part of (3).

GPU section (only with CUDA): sapiens2-0.4b compute throughput (bf16 autocast) and MFU, counting the
FLOPs of one real training step with ``torch.utils.flop_counter``.

    .venv/bin/python benchmarks/pretrain_bench.py [--steps 10] [--batch 8] [--workers 2] [--shards DIR]
        [--n-local 6] [--global-size 224] [--local-size 96]

The view sizes default to the config's (what the main job and the docs' runs use); the ratio
"data alone / full step" is the headroom of the input pipeline at those sizes, and "images/s per
decoding worker" tells how many workers a faster (GPU) step needs.
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from humans.pretrain.config import load_train_config  # noqa: E402
from humans.pretrain.data import DataFeed, resolve_shards  # noqa: E402
from humans.pretrain.trainer import Trainer  # noqa: E402
from humans.shared.runtime import setup_runtime  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_photo_shards(out: Path, n: int = 32) -> Path:
    import hashlib

    import numpy as np
    import skimage.data

    from humans.shared.imageio import encode_jpeg
    from humans.shared.shards import ShardWriter, write_manifest

    names = ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry")
    photos = []
    for name in names:
        img = getattr(skimage.data, name)()
        photos.append(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])
    infos, w = [], None
    for i in range(n):
        if i % 16 == 0:
            if w is not None:
                infos.append(w.close())
            w = ShardWriter(out, "humans", i // 16)
        img = photos[i % len(photos)]
        if i // len(photos) % 2:
            img = img[:, ::-1]
        data = encode_jpeg(np.ascontiguousarray(img), quality=90)
        key = f"bench{i:05d}"
        w.add(key, {"jpg": data, "json": {"key": key, "source": names[i % len(names)], "width": img.shape[1],
                                          "height": img.shape[0], "image_ext": "jpg",
                                          "image_sha256": hashlib.sha256(data).hexdigest()}})
    infos.append(w.close())
    write_manifest(out, infos)
    return out


def cpu_config(shards: str, batch: int, workers: int, threads: int, steps: int, views: dict | None = None):
    return load_train_config(None, {**{f"views.{k}": v for k, v in (views or {}).items() if v is not None},
        "model": "sapiens2-tiny", "objective": "mae+cl", "steps": steps, "threads": threads,
        "mae.decoder_dim": 128, "mae.decoder_depth": 2, "mae.decoder_heads": 4,
        "cl.out_dim": 4096, "cl.hidden_dim": 512, "cl.bottleneck_dim": 128,
        "data.shards": shards, "data.batch_size": batch, "data.num_workers": workers,
        "data.shuffle_buffer": 64, "data.shuffle_initial": 16,
        "log_every": 10_000, "ckpt_every": 10_000, "keep_ckpts": 1})


def bench_data(cfg, n_batches: int) -> float:
    feed = DataFeed(resolve_shards(cfg.data.shards), cfg.data, cfg.views, cfg.n_local, cfg.seed)
    next(feed)                                      # workers started, first batch out
    t = time.perf_counter()
    for _ in itertools.islice(feed, n_batches):
        pass
    dt = time.perf_counter() - t
    feed.close()
    return n_batches * cfg.data.batch_size / dt


def bench_compute(cfg, out: Path, n_steps: int) -> tuple[float, float, float]:
    feed0 = DataFeed(resolve_shards(cfg.data.shards), cfg.data.model_copy(update={"num_workers": 0}),
                     cfg.views, cfg.n_local, cfg.seed)
    batch = next(feed0)
    trainer = Trainer(cfg, out, feed=[batch] * (n_steps + 2))
    trainer.train_step(batch)                       # warm-up (allocations, layouts)
    base = rss_mb()
    t = time.perf_counter()
    for _ in range(n_steps):
        trainer.train_step(batch)
    dt = time.perf_counter() - t
    return n_steps * cfg.data.batch_size / dt, base, peak_rss_mb()


def bench_full(cfg, out: Path, n_steps: int) -> tuple[float, float]:
    trainer = Trainer(cfg.model_copy(update={"steps": n_steps + 1}), out)
    trainer.train_step(next(trainer._iter))         # warm-up, workers started
    data_s = total = 0.0
    for _ in range(n_steps):
        t0 = time.perf_counter()
        batch = next(trainer._iter)
        t1 = time.perf_counter()
        trainer.train_step(batch)
        t2 = time.perf_counter()
        data_s += t1 - t0
        total += t2 - t0
    trainer.close()
    return n_steps * cfg.data.batch_size / total, data_s / total


def bench_gpu(batch: int, steps: int) -> dict | None:
    if not torch.cuda.is_available():
        return None
    from torch.utils.flop_counter import FlopCounterMode

    cfg = load_train_config(None, {"model": "sapiens2-0.4b", "objective": "mae+cl", "steps": steps + 2,
                                   "precision": "bf16", "data.batch_size": batch, "data.shards": "unused",
                                   "log_every": 10_000, "ckpt_every": 10_000})
    g = torch.randint(0, 256, (batch, 2, 3, 224, 224), dtype=torch.uint8)
    loc = torch.randint(0, 256, (batch, cfg.n_local, 3, 96, 96), dtype=torch.uint8)
    b = {"global": g, "local": loc}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, feed=[b] * (steps + 2))
        with FlopCounterMode(display=False) as fc:
            trainer.train_step(b)
        flops = fc.get_total_flops()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(b)
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / steps
        peak = torch.cuda.max_memory_allocated() / 2**30
    name = torch.cuda.get_device_name()
    peak_tflops = float(os.environ.get("HUMANS_PEAK_TFLOPS", "989" if "H100" in name or "H200" in name else "0"))
    return {"device": name, "images_per_s": batch / dt, "step_s": dt, "tflops_per_step": flops / 1e12,
            "achieved_tflops": flops / dt / 1e12, "mfu": (flops / dt / 1e12 / peak_tflops) if peak_tflops else None,
            "peak_gib": peak}


def main() -> None:
    setup_runtime()
    os.environ.setdefault("HUMANS_NO_PROGRESS", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", help="shards to read (default: 32 real photos written to a temp dir)")
    ap.add_argument("--batch", type=int, default=8, help="images per step")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    ap.add_argument("--workers", type=int, default=2, help="decoding workers for the pipeline")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    ap.add_argument("--gpu-batch", type=int, default=64, help="batch of the GPU section")
    ap.add_argument("--n-local", type=int, help="local views per image (default: the config's)")
    ap.add_argument("--global-size", type=int, help="global view side in pixels (default: the config's)")
    ap.add_argument("--local-size", type=int, help="local view side in pixels (default: the config's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = args.shards or str(make_photo_shards(tmp / "shards"))
        cfg = cpu_config(shards, args.batch, args.workers, args.threads, args.steps + 2,
                         {"n_local": args.n_local, "global_size": args.global_size, "local_size": args.local_size})
        print(f"machine: {platform.machine()} {os.cpu_count()} CPU(s), torch {torch.__version__}, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"config: {cfg.model}, {cfg.objective}, batch {args.batch}, 2 x {cfg.views.global_size} px global + "
              f"{cfg.n_local} x {cfg.views.local_size} px local views, {args.threads} torch thread(s)")
        data_ips = bench_data(cfg, args.steps)
        data0_ips = bench_data(cfg.model_copy(update={"data": cfg.data.model_copy(update={"num_workers": 0})}),
                               max(2, args.steps // 2))
        comp_ips, base_mb, peak_mb = bench_compute(cfg, tmp / "compute", args.steps)
        full_ips, data_frac = bench_full(cfg, tmp / "full", args.steps)
    rows = [
        ("data alone, 0 workers (main process)", f"{data0_ips:8.1f}"),
        (f"data alone, {args.workers} workers", f"{data_ips:8.1f}"),
        ("compute alone (cached batch)", f"{comp_ips:8.1f}"),
        (f"full step ({args.workers} workers)", f"{full_ips:8.1f}"),
    ]
    print(f"\n{'measurement':<40} images/s")
    for name, v in rows:
        print(f"{name:<40} {v}")
    print(f"\nratio data-alone / full-step: {data_ips / full_ips:.2f}x; data wait in the full step: "
          f"{100 * data_frac:.1f} % of step time; full step / compute alone: {full_ips / comp_ips:.2f}x")
    print(f"images/s per decoding worker at these view sizes: {data0_ips:.1f} (main process, no worker "
          f"overhead); a step consuming R images/s needs about R / {data0_ips:.1f} workers per rank")
    print(f"memory: RSS after warm-up {base_mb:.0f} MiB, process peak RSS {peak_mb:.0f} MiB")
    gpu = bench_gpu(args.gpu_batch, args.steps)
    if gpu is None:
        print("GPU: not measured (no CUDA device)")
    else:
        print("GPU sapiens2-0.4b (bf16, compute, batch %d): %s" % (args.gpu_batch, gpu))


if __name__ == "__main__":
    main()
