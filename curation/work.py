"""Per-task work of the per-image stages (0-4), run inside Ray tasks and actors.

``filter_task`` reads one pool task, records read failures (``00_read``), judges resolution from the
header (stage 1), decodes survivors, scores quality (stage 2) and hands the survivors on with a
downscaled copy for detection. ``TaskCommitter`` (the state of the person actor) runs detection
(stage 3) and framing (stage 4), then commits the task: every stage's decision parquet, the staged
survivors (``work/staged/TASK.parquet``: stored bytes + metadata, and for a backbone embedder a small
RGB copy made from the detector's, so stage 6 does not decode the image again) and finally the
``work/done/TASK.json`` marker, each file through temp + rename. A task with a marker is complete;
one without is redone from scratch on resume (rewriting the same names).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from humans.shared import storage
from humans.shared.imageio import ImageError, decode_rgb, decode_rgb_reduced, encode_jpeg, encode_png, read_header

from .config import PipelineConfig
from .decisions import STAGED_SCHEMA, write_decisions, write_rows
from .detectors import detector_long_side
from .sources import PoolTask, read_task
from .stages import framing as framing_stage
from .stages import person as person_stage
from .stages import quality as quality_stage
from .stages import resolution as resolution_stage
from .stages.embedding import copy_short_side, embedding_copy
from .stages.phash import phash_hex

WORK_DIR = "work"
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}


def work_path(run_dir: str | Path, *parts: str) -> str:
    """``RUN/work/...`` (a local path or an object-store URI, see ``shared.storage``)."""
    return storage.join(str(run_dir), WORK_DIR, *parts)


def done_path(run_dir: str | Path, task_id: str) -> str:
    return work_path(run_dir, "done", f"{task_id}.json")


def staged_path(run_dir: str | Path, task_id: str) -> str:
    return work_path(run_dir, "staged", f"{task_id}.parquet")


def node_id() -> str | None:
    """The Ray node this process runs on (recorded in work records), None outside Ray."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - a record without a node id is still a record
        return None


def _limit_threads(n: float) -> None:
    cv2.setNumThreads(max(1, int(n)))


def _normalise_reasons(header, cfg: PipelineConfig) -> list[str]:
    """Why the original bytes cannot go into the shard as they are (empty: they can, unless resized)."""
    reasons = []
    if cfg.normalize_modes:
        if header.mode not in ("RGB", "L"):
            reasons.append(f"mode_{header.mode}")
        if header.exif_orientation not in (0, 1):
            reasons.append("exif_orientation")
        if header.n_frames > 1:
            reasons.append("multi_frame")
        if header.format not in _EXT or header.format in ("TIFF", "GIF", "BMP"):
            reasons.append(f"format_{header.format}")
    return reasons


def _keeps_original_jpeg(header, cfg: PipelineConfig) -> bool:
    """A JPEG whose own bytes go into the shard: its pixels serve only the analyses, so it can be decoded
    at reduced size (``decode_rgb_reduced``)."""
    too_long = bool(cfg.max_long_side) and max(header.width, header.height) > cfg.max_long_side
    return header.format == "JPEG" and not too_long and not _normalise_reasons(header, cfg)


def _store_bytes(data: bytes, header, rgb: np.ndarray, cfg: PipelineConfig) -> tuple[bytes, str, int, int, str]:
    """The bytes to put in the shard: the original, unless it must be normalised or resized."""
    h, w = rgb.shape[:2]
    reasons = _normalise_reasons(header, cfg)
    if cfg.max_long_side and max(h, w) > cfg.max_long_side:
        s = cfg.max_long_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        reasons.append(f"resized_{w}x{h}")
        h, w = rgb.shape[:2]
    if not reasons:
        return data, _EXT[header.format], w, h, ""
    if header.format == "JPEG" or any(r.startswith("resized") for r in reasons):
        return encode_jpeg(rgb, cfg.jpeg_quality), "jpg", w, h, ",".join(reasons)
    return encode_png(rgb), "png", w, h, ",".join(reasons)


def filter_task(task: PoolTask, cfg: PipelineConfig, task_index: int) -> dict[str, Any]:
    """Read, stage 1 (resolution, header only), decode, stage 2 (quality) for one pool task."""
    _limit_threads(cfg.filter_resources.num_cpus)
    res_cfg, q_cfg, p_cfg = cfg.stage("resolution"), cfg.stage("quality"), cfg.stage("person")
    max_pixels = res_cfg.max_pixels if res_cfg else 100_000_000
    small_side = detector_long_side(p_cfg) if p_cfg else 640  # the copy the detector sees
    analysis_side = max(small_side, q_cfg.analysis_long_side if q_cfg else 0)
    rows: dict[str, list[dict]] = {"read": [], "resolution": [], "quality": []}
    survivors: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for order, item in enumerate(read_task(task, cfg.download, cfg.read)):
        base = {"key": item.key, "source": item.source}
        nbytes = len(item.data) if item.data is not None else None
        if item.error is not None or item.data is None:
            rows["read"].append({**base, "kept": False, "reason": item.error or "read_error",
                                 "failed_at": "read", "bytes": nbytes,
                                 "detail": (item.detail or "")[:300] or None})
            continue
        try:
            header = read_header(item.data, item.source, max_pixels=max_pixels)
        except ImageError as exc:
            rows["read"].append({**base, "kept": False, "reason": exc.reason, "failed_at": "header",
                                 "bytes": nbytes, "detail": str(exc)[:300]})
            continue
        read_row = {**base, "kept": True, "reason": "", "failed_at": "", "bytes": nbytes, "format": header.format}
        rows["read"].append(read_row)
        if res_cfg:
            kept, reason, scores = resolution_stage.decide(header, res_cfg)
            rows["resolution"].append({**base, "kept": kept, "reason": reason, **scores})
            if not kept:
                continue
        reduced = _keeps_original_jpeg(header, cfg)  # decode once, at the size the analyses need
        try:
            if reduced:
                rgb, scale = decode_rgb_reduced(item.data, item.source, analysis_side, max_pixels=max_pixels)
            else:
                rgb, scale = decode_rgb(item.data, item.source, max_pixels=max_pixels), 1
        except ImageError as exc:  # the header was fine but the pixels are not: a read failure
            read_row.update(kept=False, reason=exc.reason, failed_at="decode", detail=str(exc)[:300])
            continue
        qscores: dict[str, Any] = {}
        if q_cfg:
            kept, reason, qscores = quality_stage.decide(
                quality_stage.measure(rgb, item.data, q_cfg, decode_scale=scale), q_cfg)
            rows["quality"].append({**base, "kept": kept, "reason": reason, **qscores})
            if not kept:
                continue
        if reduced:  # the original bytes, at the header's (upright) size; rgb is a reduced decode of them
            data, ext, w, h, converted = item.data, _EXT["JPEG"], header.width, header.height, ""
        else:
            data, ext, w, h, converted = _store_bytes(item.data, header, rgb, cfg)
        # the stored image's pixels (a reduced decode stands for them: the small copy is made from it)
        src = rgb if reduced or (w, h) == (rgb.shape[1], rgb.shape[0]) else \
            cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        s = min(1.0, small_side / max(h, w))
        small = src if s >= 1.0 else cv2.resize(src, (max(1, round(w * s)), max(1, round(h * s))),
                                                interpolation=cv2.INTER_AREA)
        survivors.append({"key": item.key, "source": item.source, "order": order, "data": data, "ext": ext,
                          "width": w, "height": h, "file_bytes": len(data), "orig_format": header.format,
                          "orig_mode": header.mode, "converted": converted,
                          "phash": phash_hex(small), "small": small, "small_scale": s,
                          "quality": qscores})
    return {"task_id": task.task_id, "task_index": task_index, "rows": rows, "survivors": survivors,
            "seconds": time.perf_counter() - t0}


class TaskCommitter:
    """Stages 3-4 for one task's survivors, then the atomic commit of everything the task produced.

    Holds the person detector (loaded once per Ray actor)."""

    def __init__(self, cfg: PipelineConfig, run_dir: str):
        self.cfg = cfg
        self.run_dir = str(run_dir)
        self.person = cfg.stage("person")
        self.framing = cfg.stage("framing")
        self.detector = None
        # framing survivors keep a small copy for the embedder, so that stage need not decode them again
        self.embed_side = copy_short_side(cfg.stage("embedding"))
        if self.person:
            _limit_threads(self.person.resources.num_cpus)
            from .detectors import build_detector

            self.detector = build_detector(self.person)
            if "torch" in sys.modules:  # a torch detector (yolo, mtcnn); the others never pay torch's import
                sys.modules["torch"].set_num_threads(max(1, int(self.person.resources.num_cpus)))

    def detector_name(self) -> str:
        return self.detector.name if self.detector else "none"

    def process(self, out: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        rows = out["rows"]
        rows["person"], rows["framing"] = [], []
        survivors = out["survivors"]
        staged = []
        people_all: list[list[dict]] = [[] for _ in survivors]
        if self.detector is not None and survivors:
            bs = self.person.resources.batch_size
            for b0 in range(0, len(survivors), bs):
                batch = survivors[b0:b0 + bs]
                dets = self.detector.detect([s["small"] for s in batch])
                for i, (s, people) in enumerate(zip(batch, dets)):
                    inv = 1.0 / s["small_scale"]
                    for p in people:  # back to stored-image pixels
                        p["box"] = [round(float(v) * inv, 2) for v in p["box"]]
                        if p.get("landmarks"):
                            p["landmarks"] = [[round(x * inv, 2), round(y * inv, 2), v] for x, y, v in p["landmarks"]]
                        if p.get("face_box"):
                            p["face_box"] = [round(float(v) * inv, 2) for v in p["face_box"]]
                    people_all[b0 + i] = people
        for s, people in zip(survivors, people_all):
            base = {"key": s["key"], "source": s["source"]}
            scores: dict[str, Any] = {"quality": s["quality"]}
            persons: list[dict] = []
            if self.person:
                kept, reason, pscores = person_stage.decide(people, self.person)
                persons = person_stage.confident(people, self.person)
                rows["person"].append({**base, "kept": kept, "reason": reason, **pscores,
                                       "detector": self.detector_name(),
                                       "persons_json": json.dumps(people, separators=(",", ":"))})
                scores["person"] = pscores
                if not kept:
                    continue
            if self.framing:
                fscores = framing_stage.measure(persons, s["width"], s["height"], self.framing)
                kept, reason, fscores = framing_stage.decide(fscores, self.framing)
                rows["framing"].append({**base, "kept": kept, "reason": reason, **fscores})
                scores["framing"] = fscores
                if not kept:
                    continue
            meta = {"persons": [{k: v for k, v in p.items()} for p in persons], "scores": scores,
                    "detector": self.detector_name(), "converted_from": s["converted"] or None}
            row = {k: s[k] for k in ("key", "source", "order", "data", "ext", "width", "height",
                                     "file_bytes", "orig_format", "orig_mode", "converted", "phash")}
            row["meta_json"] = json.dumps(meta, separators=(",", ":"))
            copy = embedding_copy(s["small"], s["small_scale"], self.embed_side) if self.embed_side else None
            if copy is not None:
                row.update(embed_pixels=copy.tobytes(), embed_height=copy.shape[0], embed_width=copy.shape[1])
            staged.append(row)
        counts = self.commit(out["task_id"], rows, staged)
        counts["seconds"] = {"filter": out["seconds"], "person": time.perf_counter() - t0}
        return counts

    def commit(self, task_id: str, rows: dict[str, list[dict]], staged: list[dict]) -> dict[str, Any]:
        """Write the task's outputs (temp + rename each), the done marker last."""
        for stage, stage_rows in rows.items():
            if stage == "read" or self.cfg.stage(stage):
                write_decisions(self.run_dir, stage, task_id, stage_rows)
        path = staged_path(self.run_dir, task_id)
        write_rows(path, staged, STAGED_SCHEMA)
        counts = {"task_id": task_id, "stages": {
            st: {"in": len(r), "out": sum(1 for x in r if x["kept"])} for st, r in rows.items()},
            "staged": len(staged),
            "staged_sha256": hashlib.sha256("\n".join(s["key"] for s in staged).encode()).hexdigest(),
            "node_id": node_id()}
        storage.write_json(done_path(self.run_dir, task_id), counts)
        return counts


def env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None
