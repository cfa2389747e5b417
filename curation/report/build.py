"""``build_report``: statistics, plots, sample grids and the page for one run directory.

Writes ``OUT/stats.json`` and ``OUT/index.html`` (both atomically); with ``inline=False`` the
images go to ``OUT/assets/`` beside the page instead of inside it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from humans.shared.log import get_logger

from . import plots
from .assets import AssetSink
from humans.shared.shards import atomic_write_bytes, is_partial_file, remove_partial_files
from .grids import duplicate_grids, kept_grids, rejected_grids
from .html import render_page
from .layout import resolve_run
from .stats import compute_stats, dumps

log = get_logger("curation.report")

GROUPS = ("Resolution and aspect ratio", "Quality scores", "Persons and detector confidence", "Duplicates",
          "Other scores")
_RESOLUTION = {"width", "height", "aspect", "aspect_ratio", "megapixels", "pixels", "image_bytes", "file_bytes",
               "short_side", "long_side", "min_side", "max_side"}
_QUALITY = {"sharpness", "brightness", "entropy", "contrast", "noise", "jpeg_quality", "colorfulness", "blur",
            "exposure", "saturation", "dark_frac", "bright_frac"}
_UNITS = {"largest_person_frac": "fraction of the image", "det_score": "confidence", "aspect": "width / height",
          "image_bytes": "bytes", "megapixels": "Mpx", "width": "pixels", "height": "pixels",
          "n_persons": "persons", "cluster_size": "images in cluster"}


def group_of(stage: str, column: str) -> str:
    c = column.lower()
    if c in _RESOLUTION:
        return GROUPS[0]
    if c in _QUALITY or stage.endswith("quality"):
        return GROUPS[1]
    if "person" in c or c.startswith("det") or "face" in c or "box" in c or "pose" in c:
        return GROUPS[2]
    if "cluster" in c or "dup" in c or "sim" in c or "hamming" in c or "distance" in c:
        return GROUPS[3]
    return GROUPS[4]


def _plot_groups(doc: dict[str, Any], sink: AssetSink) -> list[tuple[str, list[tuple[str, str]], list[str]]]:
    figs: dict[str, list[tuple[str, str]]] = {g: [] for g in GROUPS}
    missing: dict[str, list[str]] = {g: [] for g in GROUPS}
    for name, h in doc["distributions"].items():
        stage, _, column = name.partition(".")
        if not h.get("count"):
            missing[group_of(stage, column)].append(f"{name} (no values)")
            continue
        title = f"kept samples: {column}" if stage == "index" else f"{stage}: {column}"
        png = plots.hist_plot(h, title, _UNITS.get(column, column))
        figs[group_of(stage, column)].append((sink.add(f"hist_{stage}_{column}", png, "image/png"), title))
    for stage, dup in doc["duplicates"].items():
        title = f"{stage}: clusters by size"
        png = plots.cluster_plot(dup["size_counts"], title)
        figs[GROUPS[3]].append((sink.add(f"clusters_{stage}", png, "image/png"), title))
    for m in doc["missing_columns"]:
        stage, _, column = m.partition(".")
        missing[group_of(stage, column)].append(m)
    return [(g, figs[g], missing[g]) for g in GROUPS if figs[g] or missing[g] or g != GROUPS[4]]


def _remove_partial_report(out: Path) -> list[str]:
    """Temp files an interrupted report left: ``stats.json.tmpPID``, ``index.html.tmpPID``, ``assets/*``."""
    removed = []
    for p in out.iterdir():
        if p.is_file() and is_partial_file(p.name) and p.name.split(".tmp")[0] in ("stats.json", "index.html"):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    if (out / "assets").is_dir():
        removed += [f"assets/{n}" for n in remove_partial_files(out / "assets")]
    return removed


def build_report(run_dir: str | Path, out_dir: str | Path, inline: bool = True, per_shard: int = 8,
                 max_shards: int = 12, examples: int = 6, clusters: int = 6,
                 source_base: str | Path | None = None) -> dict[str, Any]:
    """Write the report of ``run_dir`` to ``out_dir``; returns the stats.json dict."""
    t0 = time.perf_counter()
    layout = resolve_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = _remove_partial_report(out)
    if stale:
        log.info("report: removed %d temporary file(s) of an interrupted report: %s", len(stale), stale[:5])
    log.info("report: statistics over %s", layout.root)
    stats = compute_stats(layout, n_examples=examples, n_groups=clusters)
    doc = stats.doc
    sink = AssetSink(out, inline=inline)
    log.info("report: plots")
    funnel_src = sink.add("funnel", plots.funnel_plot(doc["funnel"]), "image/png") if doc["funnel"] else None
    groups = _plot_groups(doc, sink)
    log.info("report: sample grids")
    base = Path(source_base) if source_base else layout.root
    kept, kept_note = kept_grids(layout, sink, per_shard=per_shard, max_shards=max_shards)
    rejected = rejected_grids(stats, sink, base)
    dups = duplicate_grids(stats, sink, base)
    dup_note = ""
    if not any(st.group_col for st in stats.stages) and layout.stage_dirs:
        dup_note = "No stage recorded dup_of or cluster_id columns: no duplicate clusters to show."
    page = render_page(doc, funnel_src, groups, kept, kept_note, rejected, dups, dup_note)
    doc["report"] = {"images": sink.count, "image_bytes": sink.bytes, "inline": inline,
                     "seconds": round(time.perf_counter() - t0, 3)}
    atomic_write_bytes(out / "stats.json", dumps(doc).encode())
    atomic_write_bytes(out / "index.html", page.encode("utf-8"))
    log.info("report: wrote %s (%d images, %.1f s)", out / "index.html", sink.count, doc["report"]["seconds"])
    return doc
