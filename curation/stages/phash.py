"""Stage 5: perceptual-hash dedup that scales by locality-sensitive banding.

Each image's pHash (``imagehash.phash``, ``hash_size**2`` bits) is cut into ``bands`` bands. Two
hashes within Hamming distance ``max_distance`` agree exactly on at least one band whenever
``bands > max_distance`` (pigeonhole), so candidate pairs only ever meet inside a bucket
``(band index, band value)``. The pipeline shuffles ``(bucket, key)`` rows to ``partitions`` Ray
reduce tasks by bucket hash (``band_rows`` / ``partition_of``); each reduce task checks the exact
Hamming distance inside its buckets (``bucket_pairs``). No process ever holds every hash: the map
side sees one pool task, the reduce side one partition, and the driver only the duplicate edges,
which union-find turns into clusters (``clusters.resolve_clusters``).
"""
from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

REASONS = ("phash_duplicate",)


def phash_hex(rgb: np.ndarray, hash_size: int = 8) -> str:
    """pHash of an RGB array as a hex string of ``hash_size**2`` bits."""
    return str(imagehash.phash(Image.fromarray(rgb), hash_size=hash_size))


def hex_to_bits(hexes: list[str], nbits: int) -> np.ndarray:
    """[n, nbits] bool array of the hashes."""
    nbytes = nbits // 8
    raw = np.frombuffer(b"".join(bytes.fromhex(h.rjust(nbytes * 2, "0")) for h in hexes), dtype=np.uint8)
    return np.unpackbits(raw.reshape(len(hexes), nbytes), axis=1).astype(bool)


def band_values(bits: np.ndarray, bands: int) -> np.ndarray:
    """[n, bands] uint64 band values (bits per band <= 64)."""
    n, nbits = bits.shape
    per = nbits // bands
    weights = (np.uint64(1) << np.arange(per - 1, -1, -1, dtype=np.uint64))
    b = bits.reshape(n, bands, per).astype(np.uint64)
    return (b * weights).sum(axis=2, dtype=np.uint64)


def partition_of(band: np.ndarray, value: np.ndarray, partitions: int) -> np.ndarray:
    """Stable bucket -> partition assignment (a 64-bit mix of band index and value)."""
    with np.errstate(over="ignore"):
        x = value.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + band.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(31)
    return (x % np.uint64(partitions)).astype(np.int64)


def band_rows(keys: list[str], hexes: list[str], nbits: int, bands: int, partitions: int,
              attrs: list | None = None) -> list[dict]:
    """Map side: for each partition, the columns (band, value, key, hash, attr) of rows routed to it.

    ``attrs[i]`` (e.g. pixels and bytes of item i) travels with the item so reducers can report it."""
    attrs = attrs if attrs is not None else [None] * len(keys)
    if not keys:
        return [{"band": np.zeros(0, np.int64), "value": np.zeros(0, np.uint64), "key": [], "hash": [],
                 "attr": []} for _ in range(partitions)]
    bits = hex_to_bits(hexes, nbits)
    vals = band_values(bits, bands)  # [n, bands]
    n = len(keys)
    band_idx = np.tile(np.arange(bands, dtype=np.int64), n)
    flat_vals = vals.reshape(-1)
    item = np.repeat(np.arange(n), bands)
    part = partition_of(band_idx, flat_vals, partitions)
    out = []
    for p in range(partitions):
        sel = np.nonzero(part == p)[0]
        out.append({"band": band_idx[sel], "value": flat_vals[sel], "key": [keys[i] for i in item[sel]],
                    "hash": [hexes[i] for i in item[sel]], "attr": [attrs[i] for i in item[sel]]})
    return out


def bucket_pairs(parts: list[dict], nbits: int, max_distance: int) -> tuple[list[tuple[str, str, int]], dict]:
    """Reduce side: exact Hamming check of every pair sharing a bucket.

    Returns the edges (key_a, key_b, distance) and the ``attr`` of every key on an edge."""
    band = np.concatenate([p["band"] for p in parts]) if parts else np.zeros(0, np.int64)
    if band.size == 0:
        return [], {}
    value = np.concatenate([p["value"] for p in parts])
    keys = [k for p in parts for k in p["key"]]
    hexes = [h for p in parts for h in p["hash"]]
    attr_of = {k: a for p in parts for k, a in zip(p["key"], p["attr"])}
    order = np.lexsort((value, band))
    band, value = band[order], value[order]
    starts = np.flatnonzero(np.r_[True, (band[1:] != band[:-1]) | (value[1:] != value[:-1])])
    ends = np.r_[starts[1:], band.size]
    edges: dict[tuple[str, str], int] = {}
    for s, e in zip(starts, ends):
        if e - s < 2:
            continue
        idx = order[s:e]
        by_hash: dict[str, list[str]] = {}
        for i in idx:
            by_hash.setdefault(hexes[i], []).append(keys[i])
        groups = [sorted(set(v)) for _, v in sorted(by_hash.items())]
        for g in groups:  # identical hashes: a chain of distance-0 edges links them all
            for a, b in zip(g[:-1], g[1:]):
                edges[(a, b)] = 0
        if len(groups) < 2:
            continue
        uniq = [h for h, _ in sorted(by_hash.items())]
        bits = hex_to_bits(uniq, nbits)
        for r0 in range(0, len(uniq), 1024):  # bounded memory even for a crowded bucket
            dist = (bits[r0:r0 + 1024, None, :] != bits[None, :, :]).sum(axis=2)
            ii, jj = np.nonzero(dist <= max_distance)
            for i, j in zip(ii + r0, jj):
                if i < j:
                    a, b = groups[i][0], groups[j][0]
                    edges[(min(a, b), max(a, b))] = int(dist[i - r0, j])
    out = [(a, b, d) for (a, b), d in sorted(edges.items())]
    return out, {k: attr_of[k] for e in out for k in e[:2]}
