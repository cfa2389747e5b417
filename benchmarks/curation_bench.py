"""Curation throughput on this machine, each stage beside the raw decode rate of the same images.

Measured in one run, side by side:

1. raw decode: Pillow ``open + convert("RGB")`` of the pool's JPEG files (best of three passes) and
   ``decode_rgb`` of every decodable image (the physical floor of this work: every kept image must be
   decoded once);
2. each stage alone, in this process on one core, on the images that reach it in the pipeline:
   header read (stage 1), quality (stage 2, decode excluded), person detection (stage 3),
   framing (stage 4), pHash + LSH banding (stage 5), embedding (stage 6: our backbone embedder,
   beside open_clip ViT-B-32 at 224 and 128 px);
3. the whole pipeline on local Ray (``--num-cpus``), start-up included and excluded; with
   ``--pool-copies K`` also on a pool K times larger (the demo pool beside K-1 more drawn with other
   seeds, re-encoded the same way), and the **marginal rate** between the two runs, (N_K - N_1) /
   (seconds_K - seconds_1): what each further image costs once the run's fixed costs (Ray and actor
   start-up, the global pHash / embedding grouping steps, the phase barriers) are paid, i.e. the rate a
   pool of billions sees;
4. faiss near-duplicate search at 10k / 100k / 1M clustered 512-d vectors (exact flat range search
   where affordable, IVF partitions otherwise);
5. the projected core-hours for a 4-billion-image pool.

``--web-size`` first re-encodes every pool JPEG that passes stage 1 at a 2000 px long side (quality 90;
the heavily compressed ones at 8), the size of a typical web photo, as ``benchmarks/decode_bench.py``
does: the demo pool's own images (512-830 px) decode in 3-4 ms, which no detector can keep pace with.

    python benchmarks/curation_bench.py --scale small --out benchmarks/results/curation.md
    python benchmarks/curation_bench.py --scale demo --web-size --faiss-sizes 10000 --out /tmp/web.md
    python benchmarks/curation_bench.py --scale demo --web-size --pool-copies 4 --faiss-sizes 10000 --out /tmp/web4.md
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, run as a script

from humans.shared.runtime import setup_runtime  # noqa: E402

setup_runtime()
os.environ.setdefault("HUMANS_NO_PROGRESS", "1")


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _time(fn, items) -> tuple[float, list]:
    """Seconds for ``fn`` over ``items``, and the outputs (kept for the next stage)."""
    t = time.perf_counter()
    out = [fn(x) for x in items]
    return time.perf_counter() - t, out


def _time_discard(fn, items) -> float:
    """Seconds for ``fn`` over ``items``, each output dropped at once. Decode rates must be timed so: kept,
    354 decoded 2000 px photos are 4 GB of fresh memory, and faulting it in halved the measured floor (the
    33-65 images/s of earlier runs; 85-120 when discarded)."""
    t = time.perf_counter()
    for x in items:
        fn(x)
    return time.perf_counter() - t


def raw_decode(pool: Path) -> dict:
    """The floor: Pillow ``open + convert("RGB")`` of the pool's decodable JPEGs, each image dropped once
    decoded (``_time_discard``), best of three passes on one core. main() measures it before the stages
    and again right after the pipeline run (this host is shared) and reports both."""
    import pandas as pd
    from PIL import Image

    labels = pd.read_parquet(pool / "labels.parquet")
    ok_jpegs = []
    for f in labels["file"]:
        b = (pool / f).read_bytes()
        if b[:3] != b"\xff\xd8\xff":
            continue
        try:
            Image.open(io.BytesIO(b)).convert("RGB")
            ok_jpegs.append(b)
        except Exception:  # noqa: BLE001 - broken files are not part of the floor
            pass
    dt = min(_time_discard(lambda b: Image.open(io.BytesIO(b)).convert("RGB"), ok_jpegs) for _ in range(3))
    return {"images": len(ok_jpegs), "seconds": dt, "img_s": _rate(len(ok_jpegs), dt)}


def bench_stages(pool: Path, pipeline: str) -> dict:
    import cv2
    import pandas as pd

    from humans.curation.config import load_pipeline
    from humans.curation.detectors import build_detector, detector_long_side
    from humans.curation.stages import framing, person, phash, quality, resolution
    from humans.curation.stages.embedding import BackboneEmbedder, OpenClipEmbedder, copy_short_side, embedding_copy
    from humans.shared.imageio import ImageError, decode_rgb, read_header

    cfg = load_pipeline(pipeline)
    labels = pd.read_parquet(pool / "labels.parquet")
    blobs = [(k, (pool / f).read_bytes()) for k, f in zip(labels["key"], labels["file"])]
    res: dict[str, dict] = {}

    res["raw_jpeg_decode"] = raw_decode(pool)

    def header(b):
        try:
            return read_header(b)
        except ImageError:
            return None

    dt, headers = _time(header, [b for _, b in blobs])
    res["01_resolution"] = {"images": len(blobs), "seconds": dt, "img_s": _rate(len(blobs), dt)}
    rcfg = cfg.stage("resolution")
    passed = [(k, b) for (k, b), h in zip(blobs, headers) if h is not None and resolution.decide(h, rcfg)[0]]

    def dec(b):
        try:
            return decode_rgb(b)
        except ImageError:
            return None

    dt = _time_discard(dec, [b for _, b in passed])  # timed as the floor is: nothing kept
    rgbs = [dec(b) for _, b in passed]  # then kept for the stages after it
    ok = [(k, b, r) for (k, b), r in zip(passed, rgbs) if r is not None]
    res["decode_rgb"] = {"images": len(ok), "seconds": dt, "img_s": _rate(len(ok), dt)}
    qcfg = cfg.stage("quality")
    dt, qs = _time(lambda x: quality.decide(quality.measure(x[2], x[1], qcfg), qcfg), ok)
    res["02_quality"] = {"images": len(ok), "seconds": dt, "img_s": _rate(len(ok), dt)}
    q_ok = [x for x, q in zip(ok, qs) if q[0]]
    pcfg = cfg.stage("person")
    det = build_detector(pcfg)
    det.detect([q_ok[0][2]])  # warm-up
    dt, dets = _time(lambda x: det.detect([x[2]])[0], q_ok)
    res["03_person"] = {"images": len(q_ok), "seconds": dt, "img_s": _rate(len(q_ok), dt), "detector": det.name}
    fcfg = cfg.stage("framing")
    p_ok = [(x, person.confident(d, pcfg)) for x, d in zip(q_ok, dets) if person.decide(d, pcfg)[0]]
    dt, fr = _time(lambda xp: framing.decide(framing.measure(xp[1], xp[0][2].shape[1], xp[0][2].shape[0], fcfg),
                                             fcfg), p_ok)
    res["04_framing"] = {"images": len(p_ok), "seconds": dt, "img_s": _rate(len(p_ok), dt)}
    f_ok = [xp[0] for xp, f in zip(p_ok, fr) if f[0]]
    st = cfg.stage("phash")
    t = time.perf_counter()
    hexes = [phash.phash_hex(x[2], st.hash_size) for x in f_ok]
    keys = [x[0] for x in f_ok]
    parts = phash.band_rows(keys, hexes, st.hash_size ** 2, st.bands, st.partitions)
    for p in range(st.partitions):
        phash.bucket_pairs([parts[p]], st.hash_size ** 2, st.max_distance)
    dt = time.perf_counter() - t
    res["05_phash"] = {"images": len(f_ok), "seconds": dt, "img_s": _rate(len(f_ok), dt)}
    import torch

    torch.set_num_threads(1)
    est = cfg.stage("embedding")
    embedders = {  # the default embedder's compute with random weights (same cost), beside open_clip's
        "06_embedding": lambda: BackboneEmbedder(None, est.image_size, tuple(est.pool_grids), threads=1,
                                                 random_config=est.random_backbone, zoom_views=tuple(est.zoom_views)),
        "06_embedding_openclip@224": lambda: OpenClipEmbedder("ViT-B-32", None, 224, threads=1),
        "06_embedding_openclip@128": lambda: OpenClipEmbedder("ViT-B-32", None, 128, threads=1),
    }
    # the backbone embedder works on the staged embedding copy, which the person actor makes from its
    # detector's copy (timed with the embedding); open_clip decodes the stored image (timed with decode_rgb)
    scales = [min(1.0, detector_long_side(pcfg) / max(x[2].shape[:2])) for x in f_ok]
    det_copies = [cv2.resize(x[2], None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for x, s in zip(f_ok, scales)]
    copy_side = copy_short_side(est)
    for name, make in embedders.items():
        emb = make()
        emb.embed([f_ok[0][2]])
        t = time.perf_counter()
        ims = [x[2] for x in f_ok]
        if name == "06_embedding":  # None: the copy would be coarser than needed; the pipeline decodes then
            copies = [embedding_copy(c, s, copy_side) for c, s in zip(det_copies, scales)]
            ims = [c if c is not None else im for c, im in zip(copies, ims)]
        for b0 in range(0, len(ims), 16):
            emb.embed(ims[b0:b0 + 16])
        dt = time.perf_counter() - t
        res[name] = {"images": len(ims), "seconds": dt, "img_s": _rate(len(ims), dt), "model": emb.description}
    res["funnel"] = {"pool": len(blobs), "resolution_in": len(blobs), "quality_in": len(ok),
                     "person_in": len(q_ok), "framing_in": len(p_ok), "phash_in": len(f_ok),
                     "embedding_in": len(f_ok)}
    return res


def upscale_pool(pool: Path, pipeline: str, long_side: int = 2000) -> int:
    """Re-encode, in place, every pool JPEG that passes stage 1 at ``long_side`` px (see the module
    docstring); the labels stay true (a sharp, well-exposed image stays so when upscaled). Returns
    how many files were re-encoded."""
    import cv2
    import pandas as pd
    from PIL import Image

    from humans.curation.config import load_pipeline
    from humans.curation.stages import resolution
    from humans.shared.imageio import ImageError, read_header

    cfg = load_pipeline(pipeline)
    labels = pd.read_parquet(pool / "labels.parquet")
    n = 0
    for r in labels.itertuples():
        path = pool / r.file
        b = path.read_bytes()
        if b[:3] != b"\xff\xd8\xff":
            continue
        try:
            if not resolution.decide(read_header(b), cfg.stage("resolution"))[0]:
                continue
            im = Image.open(io.BytesIO(b))
            exif = im.info.get("exif")
            rgb = np.asarray(im.convert("RGB"))
        except (ImageError, OSError, ValueError):
            continue
        h, w = rgb.shape[:2]
        s = long_side / max(h, w)
        big = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
        buf = io.BytesIO()
        kw = {"exif": exif} if exif else {}  # EXIF-rotated images keep their orientation tag
        Image.fromarray(big).save(buf, format="JPEG", quality=8 if r.category == "heavy_compression" else 90, **kw)
        path.write_bytes(buf.getvalue())
        n += 1
    return n


def larger_pool(pool: Path, copies: int, scale: str, web_size: bool, pipeline: str, root: Path) -> Path:
    """``pool``'s images beside those of ``copies - 1`` more demo pools (seeds 1, 2, ...), prepared the same
    way (``upscale_pool`` when ``web_size``), in one folder: a pool ``copies`` times larger of the same mix."""
    import shutil

    from humans.curation.demo_pool import make_demo_pool

    out = root / f"pool_x{copies}" / "images"
    out.mkdir(parents=True)
    for k in range(copies):
        src = pool if k == 0 else make_demo_pool(root / f"pool_seed{k}", scale=scale, seed=k)
        if k and web_size:
            upscale_pool(src, pipeline)
        for f in sorted((src / "images").rglob("*")):
            if f.is_file():
                shutil.copy2(f, out / f"s{k}_{f.relative_to(src / 'images').as_posix().replace('/', '_')}")
    return out.parent


def marginal(small: dict, large: dict) -> dict:
    """The rate of the images the larger run added: fixed costs of a run cancel out."""
    dn = large["images"] - small["images"]
    return {"images_added": dn, "img_s_work": _rate(dn, large["work_s"] - small["work_s"]),
            "img_s_wall": _rate(dn, large["wall_s"] - small["wall_s"])}


def bench_pipeline(pool: Path, pipeline: str, num_cpus: int) -> dict:
    from humans.curation import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        summary = run_pipeline(str(pool), str(Path(tmp) / "run"), pipeline=pipeline, num_cpus=num_cpus)
        wall = time.perf_counter() - t
    work = sum(v for k, v in summary["seconds"].items() if k != "total")
    startup = sum(summary.get("startup_seconds", {}).values())  # actors loading models, workers importing
    n = summary["stages"]["00_read"]["in"]
    return {"images": n, "wall_s": wall, "work_s": work, "img_s_wall": _rate(n, wall),
            "img_s_work": _rate(n, work), "startup_s": startup, "img_s_steady": _rate(n, work - startup),
            "seconds": summary["seconds"], "startup_seconds": summary.get("startup_seconds", {}),
            "samples": summary["samples"], "num_cpus": num_cpus}


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n unit vectors in groups of 4 near duplicates (the same generator as benchmarks/dedup_bench.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dedup_bench import planted_groups

    return planted_groups(n, dim, seed)


def bench_faiss(sizes: list[int], dim: int = 512, flat_max: int = 100_000) -> list[dict]:
    import faiss

    from humans.curation.stages import embedding

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    out = []
    for n in sizes:
        x = _clustered(n, dim)
        rows = []
        planted = (n // 4) * 6  # every group of 4 near-copies is 6 pairs (cosine ~0.99 > 0.95)
        if n <= flat_max:
            t = time.perf_counter()
            edges, info = embedding.dedup_edges(x, 0.95, ivf_threshold=n + 1)
            rows.append({"n": n, "index": "flat (exact)", "seconds": time.perf_counter() - t, "edges": len(edges),
                         "planted": planted})
            flat_edges = {(i, j) for i, j, _ in edges}
        else:
            flat_edges = None
        t = time.perf_counter()  # the pipeline's defaults: nlist 4*sqrt(n), k-means on 100k sampled vectors
        edges, info = embedding.dedup_edges(x, 0.95, ivf_threshold=1, nprobe=2, kmeans_sample=100_000)
        row = {"n": n, "index": f"IVF nlist={info['nlist']} nprobe=2", "seconds": time.perf_counter() - t,
               "edges": len(edges), "planted": planted}
        if flat_edges is not None:
            got = {(i, j) for i, j, _ in edges}
            row["recall_vs_flat"] = len(got & flat_edges) / max(1, len(flat_edges))
        rows.append(row)
        out += rows
        for r in rows:
            print(f"faiss {r['n']:>9,} {r['index']:<28} {r['seconds']:8.2f} s  edges {r['edges']:,}"
                  + (f"  recall {r['recall_vs_flat']:.3f}" if "recall_vs_flat" in r else ""), flush=True)
        del x
    return out


def project(stages: dict, pipe: dict | None, n_images: float = 4e9) -> dict:
    """Core-hours for n_images: per-stage single-core costs weighted by the share reaching each stage."""
    f = stages["funnel"]
    share = {k: f[k] / f["pool"] for k in f if k != "pool"}
    per_image = (1 / stages["01_resolution"]["img_s"]
                 + share["quality_in"] * (1 / stages["decode_rgb"]["img_s"] + 1 / stages["02_quality"]["img_s"])
                 + share["person_in"] * 1 / stages["03_person"]["img_s"]
                 + share["framing_in"] * 1 / stages["04_framing"]["img_s"]
                 + share["phash_in"] * 1 / stages["05_phash"]["img_s"]
                 + share["embedding_in"] * 1 / stages["06_embedding"]["img_s"])  # from the staged copy: no decode
    out = {"core_s_per_image": per_image, "core_hours_4B": per_image * n_images / 3600, "shares": share}
    if pipe:
        out["pipeline_core_hours_4B"] = n_images / (pipe["img_s_work"] / pipe["num_cpus"]) / 3600
        if pipe.get("img_s_steady"):
            out["pipeline_core_hours_4B_steady"] = n_images / (pipe["img_s_steady"] / pipe["num_cpus"]) / 3600
    return out


def write_markdown(path: Path, res: dict) -> None:
    st, pipe, fa, pr = res["stages"], res.get("pipeline"), res.get("faiss", []), res["projection"]
    dec = st["raw_jpeg_decode"]["img_s"]
    lines = [
        "# Curation benchmark", "",
        f"Machine: {res['machine']}. Load average at start: {res['load']} "
        "(other sessions may share the cores: absolute rates are then pessimistic; "
        "the ratios to the raw decode rate were measured side by side in the same run).", "",
        f"Pool: the `{res['scale']}` demo pool ({st['funnel']['pool']} images), pipeline `{res['pipeline_name']}`"
        + (f"; {res['web_size']} of its JPEGs re-encoded at a 2000 px long side (`--web-size`)." if res.get("web_size")
           else "."),
        "Each stage alone, one core, on the images that reach it:", "",
        "| step | images | images/s | x raw JPEG decode |", "|---|---:|---:|---:|",
        f"| raw JPEG decode (Pillow) | {st['raw_jpeg_decode']['images']} | {dec:.1f} | 1.00 |",
        f"| decode_rgb (all formats, EXIF, modes) | {st['decode_rgb']['images']} | {st['decode_rgb']['img_s']:.1f} | "
        f"{st['decode_rgb']['img_s'] / dec:.2f} |",
    ]
    for k in ("01_resolution", "02_quality", "03_person", "04_framing", "05_phash", "06_embedding",
              "06_embedding_openclip@224", "06_embedding_openclip@128"):
        lines.append(f"| {k} | {st[k]['images']} | {st[k]['img_s']:.1f} | {st[k]['img_s'] / dec:.2f} |")
    lines += ["", f"Detector: {st['03_person']['detector']}. Embedding: {st['06_embedding']['model']} (timed with "
              f"random weights: a trained checkpoint costs the same), beside open_clip ViT-B-32.", ""]
    if pipe:
        after = pipe.get("raw_decode_after", {}).get("img_s")
        if after:  # the pipeline's ratios against the floor measured before and after it, averaged
            lines += [f"The raw decode floor read {dec:.1f} images/s before the stages and {after:.1f} right after "
                      f"the pipeline run; the pipeline's ratios below use their mean, {(dec + after) / 2:.1f}.", ""]
            dec = (dec + after) / 2
        lines += ["Whole pipeline on local Ray:", "",
                  "| num_cpus | images | wall s | images/s (wall) | images/s (excl. Ray start) | x raw decode "
                  "| images/s (steady: excl. actor start-up too) | x raw decode |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {pipe['num_cpus']} | {pipe['images']} | {pipe['wall_s']:.1f} | {pipe['img_s_wall']:.2f} | "
                  f"{pipe['img_s_work']:.2f} | {pipe['img_s_work'] / dec:.3f} | {pipe['img_s_steady']:.2f} | "
                  f"{pipe['img_s_steady'] / dec:.3f} |", "",
                  f"Phase seconds: {json.dumps({k: round(v, 1) for k, v in pipe['seconds'].items()})}; of which "
                  f"start-up (first-to-last task rate, curation.raytools.PhaseClock): "
                  f"{json.dumps(pipe['startup_seconds'])}", ""]
        big, mg = res.get("pipeline_large"), res.get("marginal")
        if big and mg:
            lines += [f"The same pipeline on a pool {big['copies']} times larger ({big['images']} images: the demo pool "
                      f"beside {big['copies'] - 1} more drawn with other seeds, prepared the same way): "
                      f"{big['img_s_work']:.2f} images/s excl. Ray start (**{big['img_s_work'] / dec:.3f}x** raw decode), "
                      f"phase seconds {json.dumps({k: round(v, 1) for k, v in big['seconds'].items()})}. "
                      f"**Marginal rate** of the {mg['images_added']} added images, (N_large - N_small) / "
                      f"(seconds_large - seconds_small), excl. Ray start: **{mg['img_s_work']:.2f} images/s = "
                      f"{mg['img_s_work'] / dec:.3f}x raw decode** (wall: {mg['img_s_wall']:.2f} images/s = "
                      f"{mg['img_s_wall'] / dec:.3f}x): what each further image of a pool of billions costs once a "
                      "run's fixed costs are paid.", ""]
    if fa:
        lines += ["faiss near-duplicate search (512-d clustered vectors, cosine >= 0.95, all cores):", "",
                  "| vectors | index | seconds | pairs found | planted pairs | recall vs exact |",
                  "|---:|---|---:|---:|---:|---:|"]
        for r in fa:
            rec = f"{r['recall_vs_flat']:.3f}" if "recall_vs_flat" in r else "-"
            lines.append(f"| {r['n']:,} | {r['index']} | {r['seconds']:.2f} | {r['edges']:,} | {r.get('planted', 0):,} "
                         f"| {rec} |")
        lines.append("")
    lines += ["Projection for a 4-billion-image pool:", "",
              f"- per-stage single-core costs weighted by the demo pool's funnel "
              f"({', '.join(f'{k} {v:.0%}' for k, v in pr['shares'].items())}): "
              f"{pr['core_s_per_image'] * 1000:.1f} core-ms per pool image = "
              f"**{pr['core_hours_4B']:,.0f} core-hours**;"]
    if "pipeline_core_hours_4B" in pr:
        lines.append(f"- the measured end-to-end Ray rate (orchestration included, start-up excluded): "
                     f"**{pr['pipeline_core_hours_4B']:,.0f} core-hours**"
                     + (f"; at the steady rate (actor start-up excluded too, as on a pool of billions): "
                        f"**{pr['pipeline_core_hours_4B_steady']:,.0f} core-hours**" if "pipeline_core_hours_4B_steady" in pr
                        else "")
                     + (f"; at the marginal rate of the larger pool: **{pr['pipeline_core_hours_4B_marginal']:,.0f} "
                        "core-hours**" if "pipeline_core_hours_4B_marginal" in pr else "") + ".")
    share_of = {"02_quality": "quality_in", "03_person": "person_in", "04_framing": "framing_in",
                "05_phash": "phash_in", "06_embedding": "embedding_in"}
    cost = {k: pr["shares"][v] / st[k]["img_s"] for k, v in share_of.items() if st.get(k, {}).get("img_s")}
    top = max(cost, key=cost.get)
    lines += [f"- the most expensive stage per pool image is `{top}` ({cost[top] * 1000:.0f} of "
              f"{pr['core_s_per_image'] * 1000:.0f} core-ms); a stage on GPUs (num_gpus in pipelines.yaml) "
              "leaves the others as the bill. A web pool has far fewer person images than the demo pool, so "
              "fewer images reach stages 4-6.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", choices=("small", "demo"), help="demo pool size")
    ap.add_argument("--pipeline", default="humans-test", help="pipeline of pipelines.yaml to run")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray instance")
    ap.add_argument("--faiss-sizes", default="10000,100000,1000000", help="comma-separated vector counts")
    ap.add_argument("--flat-max", type=int, default=100_000, help="largest size also searched exactly (flat)")
    ap.add_argument("--skip-pipeline", action="store_true", help="skip the whole-pipeline Ray run")
    ap.add_argument("--web-size", action="store_true",
                    help="re-encode the pool's JPEGs that pass stage 1 at a 2000 px long side first (web-photo size)")
    ap.add_argument("--pool-copies", type=int, default=1,
                    help="also run the pipeline on a pool this many times larger (more demo pools, other seeds) and "
                         "report the marginal rate between the two runs (what a pool of billions pays per image)")
    ap.add_argument("--out", default="benchmarks/results/curation.md", help="markdown results file")
    args = ap.parse_args(argv)
    from humans.curation.demo_pool import make_demo_pool

    res: dict = {"machine": f"{platform.machine()} {os.cpu_count()}-core CPU, no GPU, {platform.python_version()}",
                 "load": round(os.getloadavg()[0], 1), "scale": args.scale, "pipeline_name": args.pipeline}
    with tempfile.TemporaryDirectory() as tmp:
        pool = make_demo_pool(Path(tmp) / "pool", scale=args.scale)
        if args.web_size:
            res["web_size"] = upscale_pool(pool, args.pipeline)
            print(f"re-encoded {res['web_size']} pool JPEGs at a 2000 px long side", flush=True)
        res["stages"] = bench_stages(pool, args.pipeline)
        for k, v in res["stages"].items():
            if "img_s" in v:
                print(f"{k:<22} {v['images']:>5} images {v['img_s']:9.1f} img/s", flush=True)
        res["pipeline"] = None if args.skip_pipeline else bench_pipeline(pool, args.pipeline, args.num_cpus)
        if res["pipeline"]:
            print("pipeline", json.dumps(res["pipeline"]), flush=True)
            # the floor again, right after the pipeline: this shared host's decode rate drifts within a run
            if args.pool_copies > 1:
                big = larger_pool(pool, args.pool_copies, args.scale, args.web_size, args.pipeline, Path(tmp))
                res["pipeline_large"] = bench_pipeline(big, args.pipeline, args.num_cpus)
                res["pipeline_large"]["copies"] = args.pool_copies
                res["marginal"] = marginal(res["pipeline"], res["pipeline_large"])
                print("pipeline_large", json.dumps(res["pipeline_large"]), flush=True)
                print("marginal", json.dumps(res["marginal"]), flush=True)
            res["pipeline"]["raw_decode_after"] = raw_decode(pool)
            print(f"raw_jpeg_decode after the pipeline {res['pipeline']['raw_decode_after']['img_s']:.1f} img/s",
                  flush=True)
    sizes = [int(s) for s in args.faiss_sizes.split(",") if s]
    res["faiss"] = bench_faiss(sizes, flat_max=args.flat_max)
    res["projection"] = project(res["stages"], res["pipeline"])
    if res.get("marginal"):
        res["projection"]["pipeline_core_hours_4B_marginal"] = 4e9 / (res["marginal"]["img_s_work"] / args.num_cpus) / 3600
    print("projection", json.dumps(res["projection"]))
    out = Path(args.out)
    write_markdown(out, res)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
