#!/usr/bin/env python
"""Report time and peak memory over a synthetic run with a 1-million-row index.

Writes a synthetic run directory (``index.parquet`` with N rows in N/1000 shards, ``manifest.json``,
seven stages of decision parquets in files of 100k rows, with the pipeline's score columns and
duplicate clusters; no tar files and no pool images, so the grids show their notes), then measures
side by side, each in a fresh process (peak RSS from ``getrusage(RUSAGE_CHILDREN)``):

  * ``python -m curation.report report RUN --out R`` (the streaming report), at N and N/10 rows;
  * a naive baseline: ``pandas.read_parquet`` of the index and every stage, then the same funnel
    counts and per-shard sums in memory.

Usage: python benchmarks/report_bench.py [--rows 1000000] [--work /tmp/report-bench] [--keep] [--reuse]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

STAGES = [("00_read", 0.03, "corrupt"), ("01_resolution", 0.04, "too_small"), ("02_quality", 0.05, "blurry"),
          ("03_person", 0.06, "no_person"), ("04_framing", 0.03, "person_too_small"),
          ("05_phash", 0.02, "phash_duplicate"), ("06_embedding", 0.01, "embedding_duplicate")]
FILE_ROWS = 100_000
SHARD_ROWS = 1000


def _keys(ids: np.ndarray) -> pa.Array:
    return pa.array(np.char.add("k", np.char.zfill(ids.astype(str), 9)).astype(object), pa.string())


def make_run(root: Path, n_kept: int, seed: int = 0) -> Path:
    """A synthetic run whose funnel ends in exactly ``n_kept`` samples."""
    rng = np.random.default_rng(seed)
    keep = np.prod([1 - f for _, f, _ in STAGES])
    n = int(np.ceil(n_kept / keep)) + 10
    run = root / f"run_{n_kept}"
    shutil.rmtree(run, ignore_errors=True)
    (run / "stages").mkdir(parents=True)
    alive = np.arange(n)
    for si, (stage, frac, reason) in enumerate(STAGES):
        m = len(alive)
        n_rej = m - n_kept if si == len(STAGES) - 1 else int(round(m * frac))
        rejected = np.zeros(m, bool)
        rejected[rng.choice(m, size=n_rej, replace=False)] = True
        cols: dict[str, pa.Array] = {}
        if stage == "01_resolution":
            w = rng.integers(200, 4000, m)
            cols = {"width": pa.array(w), "height": pa.array((w * rng.uniform(0.5, 2.0, m)).astype(np.int64)),
                    "aspect": pa.array(rng.uniform(0.5, 2.0, m))}
        elif stage == "02_quality":
            cols = {k: pa.array(rng.gamma(2.0, s, m)) for k, s in
                    (("sharpness", 50.0), ("mean", 60.0), ("entropy", 3.0), ("jpeg_quality", 40.0),
                     ("blockiness", 0.5), ("dark_frac", 0.05), ("bright_frac", 0.05))}
        elif stage == "03_person":
            cols = {"n_persons": pa.array(rng.poisson(1.5, m)), "n_detections": pa.array(rng.poisson(2.0, m)),
                    "det_score": pa.array(rng.uniform(0.2, 1.0, m))}
        elif stage == "04_framing":
            cols = {"largest_person_frac": pa.array(rng.beta(2, 5, m)), "touching_sides": pa.array(rng.integers(0, 3, m))}
        elif stage in ("05_phash", "06_embedding"):
            rep = alive.copy()
            dup_idx = np.flatnonzero(rejected)
            keep_idx = np.flatnonzero(~rejected)
            rep[dup_idx] = alive[keep_idx[rng.integers(0, len(keep_idx), len(dup_idx))]]
            _, inv, counts = np.unique(rep, return_inverse=True, return_counts=True)
            cols = {"cluster_rep": _keys(rep), "cluster_size": pa.array(counts[inv].astype(np.int64))}
            cols["distance" if stage == "05_phash" else "similarity"] = pa.array(rng.uniform(0, 10, m))
        reasons = np.where(rejected, reason, "").astype(object)
        table = pa.table({"key": _keys(alive),
                          "source": pa.array(np.char.add("/nonexistent/pool/", np.char.add(
                              np.char.zfill(alive.astype(str), 9), ".jpg")).astype(object), pa.string()),
                          "stage": pa.array([stage.split("_", 1)[1]] * m, pa.string()),
                          "kept": pa.array(~rejected), "reason": pa.array(reasons, pa.string()),
                          "task_id": pa.array((alive // 256).astype(str).astype(object), pa.string()), **cols})
        d = run / "stages" / stage
        d.mkdir()
        for i in range(0, m, FILE_ROWS):
            pq.write_table(table.slice(i, FILE_ROWS), d / f"part-{i // FILE_ROWS:05d}.parquet")
        alive = alive[~rejected]
    assert len(alive) == n_kept, (len(alive), n_kept)
    shard_idx = np.arange(n_kept) // SHARD_ROWS
    names = np.char.add("shard-", np.char.add(np.char.zfill(shard_idx.astype(str), 6), ".tar")).astype(object)
    w = rng.integers(256, 4000, n_kept)
    index = pa.table({
        "key": _keys(alive), "shard": pa.array(names, pa.string()),
        "source": pa.array(np.char.add("/nonexistent/pool/", alive.astype(str)).astype(object), pa.string()),
        "image_ext": pa.array(["jpg"] * n_kept, pa.string()),
        "image_bytes": pa.array(rng.integers(20_000, 2_000_000, n_kept)),
        "image_sha256": pa.array(["0" * 64] * n_kept, pa.string()),
        "width": pa.array(w), "height": pa.array((w * rng.uniform(0.6, 1.8, n_kept)).astype(np.int64)),
        "n_persons": pa.array(rng.integers(1, 6, n_kept)),
        "largest_person_frac": pa.array(rng.uniform(0.05, 0.9, n_kept)),
        "det_score": pa.array(rng.uniform(0.5, 1.0, n_kept)),
        "cluster_id": pa.array(np.full(n_kept, -1, np.int64)),
    })
    pq.write_table(index, run / "index.parquet")
    n_shards = int(shard_idx.max()) + 1
    shards = [{"name": f"shard-{i:06d}.tar", "samples": int(min(SHARD_ROWS, n_kept - i * SHARD_ROWS)),
               "bytes": 0, "sha256": "0" * 64, "keys_sha256": "0" * 64} for i in range(n_shards)]
    (run / "manifest.json").write_text(json.dumps({"format": "humans-shards-v1", "shards": shards,
                                                   "total_samples": n_kept}))
    (run / "run.json").write_text(json.dumps({"seconds": {"total": 3600.0}}))
    return run


NAIVE = textwrap.dedent("""
    import sys, glob, pandas as pd
    run = sys.argv[1]
    idx = pd.read_parquet(run + "/index.parquet")
    per_shard = idx.groupby("shard").agg(samples=("key", "size"), image_bytes=("image_bytes", "sum"),
                                         w=("width", "mean"), h=("height", "mean"))
    for d in sorted(glob.glob(run + "/stages/*")):
        df = pd.concat([pd.read_parquet(f) for f in sorted(glob.glob(d + "/*.parquet"))], ignore_index=True)
        counts = (len(df), int(df["kept"].sum()), df.loc[~df["kept"], "reason"].value_counts().to_dict())
    print(len(idx), len(per_shard))
""")


WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(u.ru_maxrss, u.ru_utime + u.ru_stime); sys.exit(r.returncode)")


def measure(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """Run ``cmd`` in a fresh process under a small wrapper: (wall s, CPU s, peak RSS MiB of ``cmd``).

    CPU seconds (user + system) are reported beside wall time because they hardly depend on what
    else the machine is running.
    """
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True, cwd=cwd,
                         env={**os.environ, "HUMANS_NO_PROGRESS": "1"})
    wall = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    rss, cpu = out.stdout.strip().splitlines()[-1].split()
    return wall, float(cpu), int(rss) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="index rows (kept samples) of the big run")
    ap.add_argument("--work", default="/tmp/report-bench", help="scratch folder for the synthetic runs")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic runs afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse synthetic runs kept in --work by an earlier --keep")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    py = sys.executable
    rows = []
    for n in (args.rows // 10, args.rows):
        t = time.perf_counter()
        run = work / f"run_{n}"
        if not (args.reuse and (run / "index.parquet").is_file()):
            run = make_run(work, n)
        gen = time.perf_counter() - t
        n_dec = sum(pq.ParquetFile(f).metadata.num_rows for f in (run / "stages").rglob("*.parquet"))
        out = work / f"report_{n}"
        shutil.rmtree(out, ignore_errors=True)
        load = os.getloadavg()[0]
        wall, cpu, peak = measure([py, "-m", "humans.curation.report", "report", str(run), "--out", str(out)], repo)
        stats = json.loads((out / "stats.json").read_text())
        assert stats["totals"]["kept"] == n, stats["totals"]
        nwall, ncpu, npeak = measure([py, "-c", NAIVE, str(run)], repo)
        rows.append({"index_rows": n, "decision_rows": n_dec, "generate_s": gen, "report_s": wall,
                     "report_cpu_s": cpu, "naive_cpu_s": ncpu, "load_before": load,
                     "report_inner_s": stats["report"]["seconds"], "stats_s": stats["stats_seconds"],
                     "report_peak_mib": peak, "naive_s": nwall, "naive_peak_mib": npeak,
                     "html_kib": (out / "index.html").stat().st_size / 1024})
        print(json.dumps(rows[-1]), flush=True)
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print("| index rows | decision rows | report wall (s) | report CPU (s) | of which stats, wall (s) | "
          "report peak RSS (MiB) | naive pandas wall (s) | naive CPU (s) | naive peak RSS (MiB) | "
          "RSS naive / report |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['index_rows']:,} | {r['decision_rows']:,} | {r['report_s']:.1f} | {r['report_cpu_s']:.1f} | "
              f"{r['stats_s']:.1f} | {r['report_peak_mib']:.0f} | {r['naive_s']:.1f} | {r['naive_cpu_s']:.1f} | "
              f"{r['naive_peak_mib']:.0f} | {r['naive_peak_mib'] / r['report_peak_mib']:.1f}x |")
    big, small = rows[-1], rows[0]
    print(f"\n10x more rows: report CPU time x{big['report_cpu_s'] / small['report_cpu_s']:.1f}, "
          f"report peak memory x{big['report_peak_mib'] / small['report_peak_mib']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
