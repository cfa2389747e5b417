"""Training metrics: ``RUN/metrics.csv`` (always) and TensorBoard (when the package is installed).

On resume the CSV is cut back to the rows at or before the resumed step (rows a killed run wrote
after its last checkpoint would otherwise appear twice), then appended to.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from humans.shared.log import get_logger
from humans.shared.shards import atomic_write_bytes

log = get_logger("pretrain.metrics")

FIELDS = ("step", "loss", "loss_mae", "loss_cl", "lr", "tau", "teacher_temp", "teacher_entropy",
          "grad_norm", "images_per_s", "data_frac", "step_s", "peak_mem_mb")


class MetricsLogger:
    def __init__(self, run_dir: str | Path, resume_step: int | None = None, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.csv"
        self._tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            self._truncate(resume_step)
        if not self.path.is_file():
            atomic_write_bytes(self.path, (",".join(FIELDS) + "\n").encode())
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
        except ImportError:
            self._tb = None
        else:
            self._tb = SummaryWriter(str(Path(run_dir) / "tb"))

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

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
