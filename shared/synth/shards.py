"""Unlabelled synthetic humans as WebDataset shards, for pretraining.

``write_image_shards`` renders ``count`` people with the same generator as the labelled data and
keeps only their JPEG images (no keypoints, parts or geometry: labels never reach pretraining), in
``humans-shards-v1`` shards with a ``manifest.json`` that ``humans-pretrain train --shards`` reads
(alone or beside curated shards, comma-separated). Shards are written atomically one at a time; a
rerun keeps the shards already complete (the manifest is rewritten last), so a killed run resumes.
Use a different ``seed`` from the labelled probe data so no probe image is seen in pretraining.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import cv2
import numpy as np

from humans.shared.log import progress
from humans.shared.shards import ShardInfo, file_sha256, keys_digest, list_shards, tar_member_names, write_manifest

PREFIX = "synth"
PARAMS = "synth_shards.json"


def _render_jpeg(args: tuple[int, int, tuple[int, int], int]) -> tuple[int, bytes]:
    from humans.shared.synth.render import generate

    seed, index, size, quality = args
    rgb = generate(seed, index, size).image
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for synthetic item {index}")
    return index, buf.tobytes()


def _existing(out: Path, params: dict) -> dict[int, ShardInfo]:
    """Complete shards from an earlier run with the same parameters (refuses other parameters)."""
    ppath = out / PARAMS
    if ppath.is_file():
        old = json.loads(ppath.read_text())
        if old != params:
            diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
            raise ValueError(f"{out}: written with other parameters ({', '.join(diff)}); choose a new folder")
    elif any(out.iterdir()):
        raise ValueError(f"{out}: not empty and holds no {PARAMS}: not written by humans-synth; choose a new folder")
    done: dict[int, ShardInfo] = {}
    for path in list_shards(out):
        names = tar_member_names(path)
        keys = [n.rsplit(".", 1)[0] for n in names]
        done[int(path.stem.rsplit("-", 1)[1])] = ShardInfo(path.name, len(keys), path.stat().st_size,
                                                           file_sha256(path), keys_digest(keys))
    return done


def write_image_shards(out: str | Path, count: int, size: tuple[int, int] | int = 128, seed: int = 1000,
                       per_shard: int = 250, workers: int = 1, jpeg_quality: int = 90,
                       show_progress: bool = True) -> dict:
    """Render ``count`` unlabelled images into ``out``; returns counts and the images/s rate."""
    from humans.shared.shards import ShardWriter

    if isinstance(size, int):
        size = (size, size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = {"format": "humans-synth-images-v1", "count": int(count), "size": list(size), "seed": int(seed),
              "per_shard": int(per_shard), "jpeg_quality": int(jpeg_quality)}
    done = _existing(out, params)
    (out / PARAMS).write_text(json.dumps(params, indent=1))
    n_shards = (count + per_shard - 1) // per_shard
    todo = [s for s in range(n_shards) if s not in done]
    t0, made = time.time(), 0
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        for s in todo:
            jobs = [(seed, i, tuple(size), jpeg_quality) for i in range(s * per_shard, min(count, (s + 1) * per_shard))]
            results = pool.imap(_render_jpeg, jobs, chunksize=8) if pool else map(_render_jpeg, jobs)
            if show_progress:
                results = progress(results, desc=f"synth images, shard {s + 1}/{n_shards}", total=len(jobs), unit="img")
            with ShardWriter(out, PREFIX, s) as w:
                for index, jpg in results:
                    w.add(f"synth_{seed}_{index:07d}", {"jpg": jpg})
                    made += 1
                done[s] = w.close()
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    write_manifest(out, done.values(), {"source": "humans-synth (unlabelled images)", **params})
    seconds = time.time() - t0
    return {"out": str(out), "generated": made, "skipped": count - made, "shards": n_shards, "seconds": seconds,
            "images_per_s": made / seconds if made and seconds > 0 else 0.0}
