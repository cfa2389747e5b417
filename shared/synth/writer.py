"""Write (and read back) synthetic data sets in the ``humans-dense-v1`` format (docs/CONTRACTS.md):

    DATA/meta.json            written last, atomically (format, count, conventions, label list)
    DATA/synth_params.json    generator parameters (seed, size, labels, JPEG quality) for resuming
    DATA/images/{id}.jpg      DATA/parts/{id}.png (mode P)  DATA/masks/{id}.png (mode L, 0/255)
    DATA/normals/{id}.npy     float16 HxWx3    DATA/pointmap/{id}.npy float32 HxWx3
    DATA/albedo/{id}.png      RGB uint8
    DATA/records/{id}.json    one item's annotation + camera/light, written after its files: an item
                              is complete iff its record exists (resuming skips complete items)
    DATA/keypoints.json       COCO-style keypoints assembled from the records at the end

Items are a pure function of (seed, index, size), so any number of workers, any interruption and any
resume give byte-identical files.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from humans.shared.atomic import atomic_write_bytes
from humans.shared.synth import FORMAT, LABELS
from humans.shared.synth.render import POINTMAP_CONVENTION, Sample, generate
from humans.shared.synth.scene import parse_size
from humans.shared.humans.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON
from humans.shared.humans.parts import NUM_PARTS, PART_COLORS, PART_NAMES

GENERATOR_VERSION = 1
NORMALS_CONVENTION = ("unit outward surface normals in the camera frame (x right, y down, z forward), so "
                      "visible surfaces have n_z < 0; zeros outside the person mask")
PIXEL_CONVENTION = ("keypoint (x, y) in pixels with pixel (u, v)'s centre at x = u, y = v (a horizontal flip "
                    "maps x to W - 1 - x); v = 2 visible, 1 in the image but occluded, 0 outside (x = y = 0); "
                    "bbox [x, y, w, h] = [min col, min row, cols, rows] of the mask")


def item_id(index: int) -> str:
    return f"{index:06d}"


def _atomic_bytes(path: Path, data: bytes) -> None:
    """``shared.atomic`` with the generator's hidden temporary names (cleared on resume) and no fsync."""
    atomic_write_bytes(path, data, fsync=False, tmp=path.with_name(f".{path.name}.tmp-{os.getpid()}"))


def _atomic_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    _atomic_bytes(path, buf.getvalue())


def encode_parts_png(parts: np.ndarray) -> bytes:
    im = Image.fromarray(parts.astype(np.uint8), mode="P")
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:NUM_PARTS] = PART_COLORS
    im.putpalette(pal.reshape(-1).tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    if arr.ndim == 3:
        arr = np.ascontiguousarray(arr[..., ::-1])  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def _jpg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError("JPEG encoding failed")
    return buf.tobytes()


def annotation(sample: Sample, index: int) -> dict:
    """The item's COCO image entry and annotation (one person per image)."""
    h, w = sample.mask.shape
    kps = sample.keypoints
    flat = []
    for x, y, v in kps:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return {
        "image": {"id": index, "file_name": f"{item_id(index)}.jpg", "width": w, "height": h, **sample.record},
        "annotation": {"id": index + 1, "image_id": index, "category_id": 1, "keypoints": flat,
                       "num_keypoints": int((kps[:, 2] > 0).sum()), "bbox": [float(v) for v in sample.bbox],
                       "area": int(sample.area), "iscrowd": 0},
    }


def write_item(out: Path, sample: Sample, index: int, labels=LABELS, jpeg_quality: int = 92) -> dict:
    """Write one item's files, then its record (the completion marker). Returns the record."""
    i = item_id(index)
    _atomic_bytes(out / "images" / f"{i}.jpg", _jpg(sample.image, jpeg_quality))
    if "parts" in labels:
        _atomic_bytes(out / "parts" / f"{i}.png", encode_parts_png(sample.parts))
    if "masks" in labels:
        _atomic_bytes(out / "masks" / f"{i}.png", _png(sample.mask.astype(np.uint8) * 255))
    if "normals" in labels:
        _atomic_npy(out / "normals" / f"{i}.npy", sample.normals.astype(np.float16))
    if "pointmap" in labels:
        _atomic_npy(out / "pointmap" / f"{i}.npy", sample.pointmap.astype(np.float32))
    if "albedo" in labels:
        _atomic_bytes(out / "albedo" / f"{i}.png", _png(sample.albedo))
    rec = annotation(sample, index)
    _atomic_bytes(out / "records" / f"{i}.json", json.dumps(rec).encode())
    return rec


# ------------------------------------------------------------------------------------------ workers
_CFG: dict = {}


def _init_worker(cfg: dict) -> None:
    _CFG.update(cfg)
    try:
        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover - cv2 without threading control
        pass


def _work(index: int) -> int:
    c = _CFG
    sample = generate(c["seed"], index, c["size"])
    write_item(Path(c["out"]), sample, index, c["labels"], c["jpeg_quality"])
    return index


def _check_params(out: Path, params: dict) -> None:
    """Refuse to resume into a folder generated with other parameters (names the differing key)."""
    path = out / "synth_params.json"
    if path.is_file():
        old = json.loads(path.read_text())
        for key in ("seed", "size", "labels", "jpeg_quality", "version"):
            if old.get(key) != params.get(key):
                raise ValueError(f"{path}: key '{key}' is {old.get(key)!r} but this run asks for "
                                 f"{params.get(key)!r}; use another --out folder or the same settings")
    else:
        foreign = [n for n in ("images", "keypoints.json", "meta.json", "parts", "records") if (out / n).exists()]
        if foreign:
            raise ValueError(f"{out}: holds {', '.join(foreign)} but no synth_params.json, so it was not written "
                             "by shared.synth; refusing to write into it (nothing was changed); choose a new --out")
        _atomic_bytes(path, json.dumps(params, indent=1).encode())


def complete_items(out: Path, count: int) -> set[int]:
    rec = out / "records"
    if not rec.is_dir():
        return set()
    done = set()
    for p in rec.iterdir():
        if p.suffix == ".json" and p.stem.isdigit() and int(p.stem) < count:
            done.add(int(p.stem))
    return done


def write_dataset(out: str | Path, count: int, size=512, seed: int = 0, workers: int = 1,
                  labels=LABELS, jpeg_quality: int = 92, progress: bool = True) -> dict:
    """Generate ``count`` items into ``out`` (resumable). Returns a summary with timings."""
    from humans.shared.log import get_logger, progress as bar

    log = get_logger("synth")
    out = Path(out)
    h, w = parse_size(size)
    unknown = set(labels) - set(LABELS)
    labels = tuple(lb for lb in LABELS if lb in set(labels))
    if unknown:
        raise ValueError(f"unknown labels {sorted(unknown)}; allowed {list(LABELS)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    params = {"seed": int(seed), "size": [h, w], "labels": list(labels), "jpeg_quality": int(jpeg_quality),
              "version": GENERATOR_VERSION}
    out.mkdir(parents=True, exist_ok=True)
    _check_params(out, params)
    for d in ("images", "records") + tuple(lb for lb in labels if lb != "keypoints"):
        (out / d).mkdir(exist_ok=True)
    for d in out.iterdir():  # leftovers of an interrupted run
        if d.is_dir():
            for p in d.glob(".*.tmp-*"):
                p.unlink(missing_ok=True)
    done = complete_items(out, count)
    todo = [i for i in range(count) if i not in done]
    log.info("synth: %d items in %s (%d already complete), %dx%d, %d worker(s)", count, out, len(done), w, h, workers)
    cfg = {"seed": int(seed), "size": (h, w), "out": str(out), "labels": labels, "jpeg_quality": int(jpeg_quality)}
    t0 = time.time()
    if todo:
        if workers <= 1:
            _init_worker(cfg)
            it = map(_work, todo)
            for _ in (bar(it, "synth", total=len(todo), unit="img") if progress else it):
                pass
        else:
            env_keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            saved = {k: os.environ.get(k) for k in env_keys}
            os.environ.update({k: "1" for k in env_keys})
            try:
                ctx = mp.get_context("spawn")
                with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool:
                    it = pool.imap_unordered(_work, todo, chunksize=2)
                    for _ in (bar(it, "synth", total=len(todo), unit="img") if progress else it):
                        pass
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    gen_s = time.time() - t0
    finalize(out, count, params)
    return {"count": count, "generated": len(todo), "skipped": len(done), "seconds": gen_s,
            "images_per_s": len(todo) / gen_s if todo and gen_s > 0 else None, "out": str(out)}


def finalize(out: Path, count: int, params: dict) -> None:
    """Assemble keypoints.json from the records, then write meta.json (last, atomically)."""
    images, anns = [], []
    for i in range(count):
        path = out / "records" / f"{item_id(i)}.json"
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: item record missing or unreadable ({exc}); rerun to regenerate it") from None
        images.append(rec["image"])
        anns.append(rec["annotation"])
    labels = params["labels"]
    if "keypoints" in labels:
        coco = {
            "info": {"description": "humans synthetic labelled humans (shared.synth)", "format": FORMAT,
                     "keypoint_convention": PIXEL_CONVENTION},
            "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": KEYPOINT_NAMES,
                            "skeleton": [[a + 1, b + 1] for a, b in SKELETON]}],
        }
        _atomic_bytes(out / "keypoints.json", json.dumps(coco).encode())
    meta = {
        "format": FORMAT, "count": count, "keypoints": NUM_KEYPOINTS, "parts": NUM_PARTS,
        "pointmap_frame": "camera, focal-normalised",
        "pointmap_convention": POINTMAP_CONVENTION,
        "normals_convention": NORMALS_CONVENTION,
        "keypoint_convention": PIXEL_CONVENTION,
        "skeleton_base": "keypoints.json categories[0].skeleton is 1-based (COCO)",
        "albedo_convention": "person albedo under uniform white light, sRGB-agnostic uint8 (value = albedo * 255); "
                             "background pixels equal the image",
        "shading_model": "image = clip(albedo * (ambient + rgb * max(0, n . direction)), 0, 1) on person pixels "
                         "(the one-pixel band along silhouettes and primitive seams is anti-aliased with a 3x3 "
                         "blur); per-image light and camera in keypoints.json images[] (and records/)",
        "labels": ["images"] + list(labels),
        "part_names": PART_NAMES,
        "size": params["size"], "seed": params["seed"], "generator": "shared.synth",
        "generator_version": params["version"],
    }
    _atomic_bytes(out / "meta.json", json.dumps(meta, indent=1).encode())


# ------------------------------------------------------------------------------------------ reading
def read_item(out: str | Path, index: int) -> dict:
    """Read one written item back (arrays + record); missing label files are left out."""
    out = Path(out)
    i = item_id(index)
    res: dict = {"record": json.loads((out / "records" / f"{i}.json").read_text())}
    with Image.open(out / "images" / f"{i}.jpg") as im:
        res["image"] = np.asarray(im.convert("RGB"))
    if (out / "parts" / f"{i}.png").is_file():
        with Image.open(out / "parts" / f"{i}.png") as im:
            res["parts_mode"] = im.mode
            res["parts"] = np.asarray(im)
    if (out / "masks" / f"{i}.png").is_file():
        with Image.open(out / "masks" / f"{i}.png") as im:
            res["mask_mode"] = im.mode
            res["mask"] = np.asarray(im) > 127
    for name in ("normals", "pointmap"):
        if (out / name / f"{i}.npy").is_file():
            res[name] = np.load(out / name / f"{i}.npy", allow_pickle=False)
    if (out / "albedo" / f"{i}.png").is_file():
        with Image.open(out / "albedo" / f"{i}.png") as im:
            res["albedo"] = np.asarray(im.convert("RGB"))
    kp = np.asarray(res["record"]["annotation"]["keypoints"], dtype=np.float64).reshape(-1, 3)
    res["keypoints"] = kp
    return res
