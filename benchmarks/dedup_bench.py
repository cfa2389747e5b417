"""Embedding near-duplicate search at scale: time and recall of planted pairs.

    python benchmarks/dedup_bench.py [--n 1000000] [--dim 512] [--threshold 0.95] [--threads 2]

The vectors are the ones ``curation_bench.py`` searched before (``n/4`` random centres, each with 4
noisy copies at cosine ~0.996: 6 planted pairs per group, 1.5 M at 1 M vectors) so the figures compare.
Runs the IVF path of ``humans.curation.stages.embedding`` (``dedup_edges``: two-level k-means in the
sample's top principal directions, exact assignment in the centroids' span, per-partition exact search
through upper-bound vectors) and prints wall and CPU seconds per step, the planted pairs found
(recall) and the edges that are not planted (there should be none at this threshold).
Not part of the test suite (tests/curation/test_dedup_search.py runs the same code on small sizes).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def planted_groups(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n unit vectors: n/4 random centres, each repeated 4 times with noise (pairwise cosine ~0.996)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 4, dim), dtype=np.float32)
    x = np.repeat(centres, 4, axis=0)[:n]
    x += 0.06 * rng.standard_normal(x.shape, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors")
    ap.add_argument("--dim", type=int, default=512, help="dimensions")
    ap.add_argument("--threshold", type=float, default=0.95, help="cosine similarity of a near duplicate")
    ap.add_argument("--nlist", type=int, default=None, help="IVF partitions (default: default_nlist(n))")
    ap.add_argument("--nprobe", type=int, default=2, help="partitions each vector joins")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads (OMP_NUM_THREADS)")
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import faiss

    from humans.curation.stages import embedding as E

    faiss.omp_set_num_threads(args.threads)
    x = planted_groups(args.n, args.dim)
    n = len(x)
    nlist = args.nlist or E.default_nlist(n)
    steps: list[tuple[str, float, float]] = []

    def timed(name, fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        steps.append((name, time.perf_counter() - w, time.process_time() - c))
        print(f"{name:<8} wall {steps[-1][1]:7.1f} s  cpu {steps[-1][2]:7.1f} s", flush=True)
        return out

    rng = np.random.default_rng(0)
    sample = x[rng.choice(n, size=min(n, 100_000), replace=False)]  # the pipeline's kmeans_sample default
    centroids = timed("train", lambda: E.train_centroids(sample, nlist))
    lists = timed("assign", lambda: E.assign_partitions(x, centroids, args.nprobe))
    edges = timed("search", lambda: E.partitioned_edges(x, lists, args.threshold))
    planted = (n // 4) * 6
    found = sum(1 for i, j, _ in edges if i // 4 == j // 4)
    wall, cpu = sum(s[1] for s in steps), sum(s[2] for s in steps)
    print(f"\n{n:,} x {args.dim} vectors, threshold {args.threshold}, nlist {len(centroids)}, nprobe "
          f"{args.nprobe}, {args.threads} threads, load average {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} cores)")
    print(f"total wall {wall:.1f} s, cpu {cpu:.1f} s; planted pairs found {found:,} of {planted:,} "
          f"(recall {found / planted:.4f}); other edges {len(edges) - found:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
