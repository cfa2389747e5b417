"""Synthetic data generation rate: images/s at 512 px writing the full humans-dense-v1 format
(image + keypoints + parts + mask + normals + pointmap + albedo), with 1 and 2 worker processes,
measured side by side in one run; plus the render-only rate (no encoding/writing) in this process.

    python benchmarks/synth_bench.py [--count 60] [--size 512]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=60, help="images per measurement (default 60)")
    p.add_argument("--size", default="512", help="image size (default 512)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    from humans.shared.synth.render import generate
    from humans.shared.synth.writer import write_dataset
    from humans.shared.runtime import setup_runtime

    setup_runtime()
    os.environ.setdefault("HUMANS_NO_PROGRESS", "1")
    load0 = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average at start {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f}")
    generate(a.seed, 0, 64)  # warm imports
    n_render = max(a.count // 3, 5)
    t0, c0 = time.time(), time.process_time()
    for i in range(n_render):
        generate(a.seed, i, a.size)
    wall, cpu = time.time() - t0, time.process_time() - c0
    cpu_per_render = cpu / n_render
    print(f"render only (1 process): {n_render} images, {n_render / wall:.2f} images/s wall, "
          f"{cpu_per_render * 1000:.0f} ms CPU per image")
    rates, cpu_per = {}, {}

    def cpu_now() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    # start-up of the spawned workers (interpreter + imports), measured on a 2-item run, is amortised
    # over a whole data set; it is subtracted for the steady-state figure
    out = Path(tempfile.mkdtemp(prefix="synth_bench_startup_"))
    try:
        c0 = cpu_now()
        write_dataset(out, 2, a.size, a.seed + 1, workers=2, progress=False)
        startup_cpu = cpu_now() - c0 - 2 * cpu_per_render
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"2-worker pool start-up: {startup_cpu:.1f} s CPU (once per run)")
    for workers in (1, 2):
        out = Path(tempfile.mkdtemp(prefix=f"synth_bench_w{workers}_"))
        try:
            c0 = cpu_now()
            res = write_dataset(out, a.count, a.size, a.seed, workers=workers, progress=False)
            cpu_per[workers] = (cpu_now() - c0) / a.count
            rates[workers] = res["images_per_s"]
            size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
            print(f"write {a.count} items, {workers} worker(s): {res['seconds']:.1f} s wall, "
                  f"{res['images_per_s']:.2f} images/s wall, {cpu_per[workers] * 1000:.0f} ms CPU per item "
                  f"(render + encode + write; spawned workers: start-up included), {size_mb / a.count:.2f} MB per item")
        finally:
            shutil.rmtree(out, ignore_errors=True)
    print(f"wall-clock speed-up 2 workers vs 1: {rates[2] / rates[1]:.2f}x (only meaningful on an idle machine); "
          f"2,000 images at the 2-worker wall rate: {2000 / rates[2] / 60:.1f} min")
    ncpu = min(2, os.cpu_count() or 1)
    steady = cpu_per[2] - startup_cpu / a.count
    for name, per in (("1 worker (in-process)", cpu_per[1]), ("2 workers, start-up excluded", steady)):
        cap = ncpu / per
        print(f"CPU-bound capacity from {name} CPU time ({per * 1000:.0f} ms/item), {ncpu} workers on {ncpu} "
              f"idle cores: {cap:.1f} images/s (2,000 images in {2000 / cap / 60:.1f} min)")
    load1 = os.getloadavg()
    print(f"load average at end {load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f}")


if __name__ == "__main__":
    main()
