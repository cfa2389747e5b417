"""Training metrics: ``RUN/metrics.csv`` (always), TensorBoard event files under ``RUN/tb`` and PNG
plots under ``RUN/plots`` (losses, learning rate, collapse monitors, throughput).

On resume the CSV is cut back to the rows at or before the resumed step (rows a killed run wrote
after its last checkpoint would otherwise appear twice), then appended to. TensorBoard drops the
events of a resumed writer's earlier steps itself (``purge_step``). Plots are redrawn from the CSV
by ``plot()`` (the trainer calls it at checkpoints, at most once a minute, and when the run ends).
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from humans.shared.log import get_logger
from humans.shared.runlog import plot_curves, tensorboard_writer
from humans.shared.shards import atomic_write_bytes

log = get_logger("pretrain.metrics")

FIELDS = ("step", "loss", "loss_mae", "loss_cl", "loss_cl_patch", "lr", "tau", "teacher_temp", "teacher_entropy",
          "teacher_kl_uniform", "teacher_feature_std", "grad_norm", "images_per_s", "data_frac", "step_s", "peak_mem_mb")

# figure file -> {panel title: columns}; columns missing from metrics.csv are left out
PLOTS = {
    "loss.png": {"losses": ("loss", "loss_mae", "loss_cl", "loss_cl_patch")},
    "lr.png": {"learning rate": ("lr",), "teacher momentum": ("tau",)},
    "collapse.png": {"teacher entropy (nats)": ("teacher_entropy",),
                     "KL(teacher mean || uniform) (nats)": ("teacher_kl_uniform",),
                     "teacher per-dim std x sqrt(K)": ("teacher_feature_std",),
                     "teacher temperature": ("teacher_temp",), "gradient norm": ("grad_norm",)},
    "throughput.png": {"images/s": ("images_per_s",), "share of step time in data loading": ("data_frac",)},
}


class MetricsLogger:
    def __init__(self, run_dir: str | Path, resume_step: int | None = None, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.csv"
        self.plot_dir = Path(run_dir) / "plots"
        self._tb = None
        self._last_plot = 0.0
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            self._truncate(resume_step)
        if not self.path.is_file():
            atomic_write_bytes(self.path, (",".join(FIELDS) + "\n").encode())
        # a resumed run hides the events a killed run wrote past its checkpoint
        self._tb = tensorboard_writer(run_dir, purge_step=resume_step + 1 if resume_step else None)

    def _truncate(self, step: int) -> None:
        rows = list(csv.DictReader(io.StringIO(self.path.read_text())))
        kept = [r for r in rows if r.get("step") and int(r["step"]) <= step]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(kept)
        atomic_write_bytes(self.path, buf.getvalue().encode())
        if len(kept) != len(rows):
            log.info("metrics.csv: dropped %d row(s) written after step %d by the interrupted run",
                     len(rows) - len(kept), step)

    def write(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None and v != "":
                    self._tb.add_scalar(f"pretrain/{k}", float(v), int(row["step"]))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def plot(self, min_interval_s: float = 0.0) -> list[Path]:
        """Redraw ``RUN/plots/*.png`` from metrics.csv (skipped if drawn less than ``min_interval_s`` ago)."""
        if not self.enabled or not self.path.is_file() or time.monotonic() - self._last_plot < min_interval_s:
            return []
        rows = list(csv.DictReader(io.StringIO(self.path.read_text())))
        written = []
        for name, panels in PLOTS.items():
            out = plot_curves(rows, self.plot_dir / name, panels, title=f"{self.path.parent.name}: {name[:-4]}",
                              log_y=("losses",))
            if out is not None:
                written.append(out)
        self._last_plot = time.monotonic()
        return written

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self.plot()
