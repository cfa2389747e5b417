"""Report plots drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display).

Each function takes the JSON-ready statistics (from stats.py) and returns PNG bytes; plots are
small (about 20 kB) so the page stays light when inlined.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

KEPT = "#3b8b5a"
REJECTED = "#c8553d"
NEUTRAL = "#4a6fa5"
DPI = 80
MAX_CLUSTER_BARS = 30


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _figure(w: float = 4.4, h: float = 2.7, left: float = 0.16) -> tuple[Figure, Any]:
    fig = Figure(figsize=(w, h))  # fixed margins: constrained layout costs 3x the drawing time
    fig.subplots_adjust(left=left, right=0.97, top=0.88, bottom=min(0.5, 0.5 / h))
    ax = fig.add_subplot(1, 1, 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    # few ticks: tick layout is most of the drawing time
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    return fig, ax


def funnel_plot(funnel: list[dict[str, Any]]) -> bytes:
    """Horizontal bars per stage: kept (green) and rejected (red) out of what entered."""
    fig, ax = _figure(6.4, 0.45 * max(len(funnel), 1) + 1.0, left=0.2)
    names = [f["stage"] for f in funnel][::-1]
    kept = np.array([f["kept"] for f in funnel][::-1], dtype=float)
    rej = np.array([f["rejected"] for f in funnel][::-1], dtype=float)
    y = np.arange(len(names))
    ax.barh(y, kept, color=KEPT, label="kept")
    ax.barh(y, rej, left=kept, color=REJECTED, label="rejected")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("images", fontsize=8)
    for yi, k, r in zip(y, kept, rej):
        total = k + r
        pct = f"{100 * k / total:.1f}% kept" if total else "empty"
        ax.text(total, yi, f"  {int(total):,} in · {pct}", va="center", fontsize=7)
    ax.set_xlim(0, max(float((kept + rej).max()) if len(kept) else 1.0, 1.0) * 1.45)
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    return _png(fig)


def hist_plot(h: dict[str, Any], title: str, xlabel: str) -> bytes:
    """A histogram from stats.json: stacked kept/rejected when split, one colour otherwise."""
    fig, ax = _figure()
    edges = np.asarray(h.get("bin_edges") or [0.0, 1.0], dtype=float)
    n = len(edges) - 1
    if "kept_counts" in h:
        kept = np.asarray(h["kept_counts"] or np.zeros(n), dtype=float)
        rej = np.asarray(h["rejected_counts"] or np.zeros(n), dtype=float)
        # stacked: the total drawn first in red, the kept part over it in green (stairs: fast)
        ax.stairs(kept + rej, edges, fill=True, color=REJECTED, label="rejected")
        ax.stairs(kept, edges, fill=True, color=KEPT, label="kept")
        if rej.sum() and kept.sum():
            ax.legend(fontsize=7, frameon=False)
    else:
        counts = np.asarray(h.get("counts") or np.zeros(n), dtype=float)
        ax.stairs(counts, edges, fill=True, color=NEUTRAL)
    if h.get("integer"):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    fig.suptitle(title, fontsize=9)  # cheaper than ax.set_title (no title-position search)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("images", fontsize=8)
    if h.get("count", 0) == 0:
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center", color="#888")
    return _png(fig)


def cluster_plot(size_counts: dict[str, int], title: str) -> bytes:
    """Number of duplicate clusters per cluster size (log scale: singletons dominate)."""
    fig, ax = _figure()
    sizes = sorted(int(s) for s in size_counts)
    labels = [str(s) for s in sizes if s <= MAX_CLUSTER_BARS]
    counts = [size_counts[str(s)] for s in sizes if s <= MAX_CLUSTER_BARS]
    big = sum(size_counts[str(s)] for s in sizes if s > MAX_CLUSTER_BARS)
    if big:
        labels.append(f">{MAX_CLUSTER_BARS}")
        counts.append(big)
    ax.bar(labels, counts, color=[NEUTRAL if lab == "1" else REJECTED for lab in labels])
    if counts and max(counts) > 0:
        ax.set_yscale("log")
    fig.suptitle(title, fontsize=9)
    ax.set_xlabel("cluster size (images)", fontsize=8)
    ax.set_ylabel("clusters", fontsize=8)
    if len(labels) > 20:
        ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    return _png(fig)
