"""What a user watches during and after a run: TensorBoard event files and PNG plots of its curves.

``tensorboard_writer(run_dir)`` gives a ``SummaryWriter`` on ``RUN/tb`` (None, with one warning,
when the ``tensorboard`` package is missing). ``plot_curves`` draws named series against a step
axis as one PNG with a panel per group (loss curves, learning rate, collapse monitors), written
atomically next to the run; matplotlib runs headless (Agg).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from humans.shared.atomic import atomic_path
from humans.shared.log import get_logger

log = get_logger("runlog")
_WARNED = False


def tensorboard_writer(run_dir: str | Path, subdir: str = "tb", purge_step: int | None = None):
    """A ``torch.utils.tensorboard.SummaryWriter`` writing under ``RUN/<subdir>``, or None.

    ``purge_step``: a resumed run's first step; TensorBoard hides events of earlier runs at or after it."""
    global _WARNED
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _WARNED:
            log.warning("tensorboard is not installed: no event files (pip install tensorboard)")
            _WARNED = True
        return None
    return SummaryWriter(str(Path(run_dir) / subdir), purge_step=purge_step)


def _finite(v: Any) -> bool:
    try:
        return v is not None and v != "" and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def plot_curves(rows: Sequence[Mapping[str, Any]], path: str | Path, panels: Mapping[str, Sequence[str]],
                x: str = "step", title: str | None = None, log_y: Sequence[str] = ()) -> Path | None:
    """One PNG with a panel per ``panels`` item (title -> column names) of ``rows`` against ``x``.

    Columns absent from every row are left out; a panel with nothing to draw is dropped; returns
    None (nothing written) when no panel has data.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    drawn = {}
    for name, cols in panels.items():
        series = {}
        for col in cols:
            pts = [(float(r[x]), float(r[col])) for r in rows if _finite(r.get(x)) and _finite(r.get(col))]
            if pts:
                series[col] = pts
        if series:
            drawn[name] = series
    if not drawn:
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.2 * len(drawn), 3.2), squeeze=False)
    for ax, (name, series) in zip(axes[0], drawn.items()):
        for col, pts in series.items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=col, marker="." if len(xs) < 30 else None)
        if name in log_y and all(y > 0 for pts in series.values() for _, y in pts):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
