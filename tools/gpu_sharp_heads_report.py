"""Two helpers of ``benchmarks/gpu_sharp_heads.sh``.

``plan``: how many pretraining steps fit a time budget, from a short calibration run's ``metrics.csv``
(its per-step seconds) and the calibration phase's wall time (its start-up is the rest): prints
``STEPS WARMUP``.

``report``: the record of one run: what ran on which device, how far pretraining went, and each head's held-out
figures beside its mean-prediction baseline, as JSON plus a Markdown table on stdout. It reads the script's
working folder: ``phases.tsv`` (name, seconds, exit status of each phase),
``pretrain/metrics.csv`` (the pretraining log) and ``heads/TASK_ARM/metrics.json`` (one per head). A head
whose phase failed or ran out of time has no metrics file; it is listed under ``missing``, not scored.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a source checkout: the repo's parent onto the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the figures of each head the record keeps, the primary first (heads.probe.PRIMARY)
SHOWN_KEYS = {"seg": ("mIoU", "boundary_F1"), "normal": ("mean_deg", "grad_ratio")}
ARMS = ("pretrained", "random")


def shown() -> dict[str, list[tuple[str, str, bool | None]]]:
    """(metric key, label, higher is better) of each head's figures: labels and directions from the task
    registry's metric rows (``heads.probe.table_rows``); the gradient ratio, which has no better direction
    (1 = the truth's sharpness), is not among them."""
    from humans.heads.probe import PRIMARY, table_rows

    rows = {(t, k): (label[len(t) + 1:], higher) for t, k, label, higher in table_rows(list(SHOWN_KEYS))}
    rows[("normal", "grad_ratio")] = ("gradient ratio (1 = truth)", None)
    out = {t: [(k, *rows[(t, k)]) for k in keys] for t, keys in SHOWN_KEYS.items()}
    assert all(out[t][0][0] == PRIMARY[t][0] for t in out), "the first figure of each head is its primary"
    return out


def device_name(device: str) -> str:
    """The accelerator's name, or the CPU's core count."""
    import os

    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name()
    return f"CPU, {os.cpu_count()} cores"


def read_phases(path: Path) -> dict[str, dict]:
    """``phases.tsv`` as {name: {"seconds", "rc"}} (rc 124: stopped by its time limit)."""
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        name, seconds, rc = line.split("\t")
        out[name] = {"seconds": int(seconds), "rc": int(rc)}
    return out


def read_pretrain(path: Path) -> dict:
    """First and last logged step and loss of the pretraining run (empty without a log)."""
    if not path.exists():
        return {}
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("step")]
    if not rows:
        return {}
    first, last = rows[0], rows[-1]
    ips = [float(r["images_per_s"]) for r in rows if r.get("images_per_s")]
    return {"first_step": int(first["step"]), "first_loss": float(first["loss"]), "last_step": int(last["step"]),
            "last_loss": float(last["loss"]), "images_per_s": round(sum(ips) / len(ips), 1) if ips else None}


def collect(work: Path) -> tuple[list[dict], list[str]]:
    """One record per (task, arm, metric) of the finished heads, and the heads that did not finish."""
    records, missing = [], []
    for task, figures in shown().items():
        for arm in ARMS:
            path = work / "heads" / f"{task}_{arm}" / "metrics.json"
            if not path.exists():
                missing.append(f"{task}_{arm}")
                continue
            doc = json.loads(path.read_text())
            for i, (key, label, higher) in enumerate(figures):
                records.append({"task": task, "arm": arm, "metric": key, "label": label,
                                "value": doc["metrics"][key], "mean_baseline": doc["mean_baseline"][key],
                                "higher_is_better": higher, "primary": i == 0,
                                "train_samples": doc.get("train_samples"), "val_samples": doc.get("val_samples"),
                                "seconds": doc.get("seconds")})
    return records, missing


def table(records: list[dict]) -> str:
    """Markdown: one row per task and metric, pretrained | random init | mean prediction."""
    by = {(r["task"], r["metric"], r["arm"]): r for r in records}
    lines = ["| head | metric | pretrained | random init | mean prediction |", "|---|---|---:|---:|---:|"]
    for task, figures in shown().items():
        for key, label, higher in figures:
            cells = [by.get((task, key, arm)) for arm in ARMS]
            if not any(cells):
                continue
            base = next(c for c in cells if c)["mean_baseline"]
            vals = [f"{c['value']:.4g}" if c else "n/a" for c in cells]
            arrow = "" if higher is None else " ↑" if higher else " ↓"
            lines.append(f"| {task} | {label}{arrow} | {vals[0]} | {vals[1]} | {base:.4g} |")
    return "\n".join(lines)


def plan_steps(metrics_csv: Path, phase_seconds: float, budget_s: float, max_steps: int) -> tuple[int, int]:
    """(steps, warm-up steps) of a run that fits ``budget_s``: the calibration's steps after its first (which
    carries one-off costs) give the seconds per step, its phase time less its steps the start-up; a tenth of the
    steps warm up. (0, 0) when the calibration logged nothing (it failed or was skipped): the real run then
    fails or is skipped too, and the record says so."""
    times = []
    if metrics_csv.exists():
        with metrics_csv.open() as f:
            times = [float(r["step_s"]) for r in csv.DictReader(f) if r.get("step_s")]
    if not times:
        return 0, 0
    per_step = sum(times[1:]) / len(times[1:]) if len(times) > 1 else times[0]
    startup = max(0.0, phase_seconds - sum(times))
    steps = int(max(1, min(max_steps, math.floor((budget_s - startup) / per_step + 1e-6)))) if per_step > 0 else max_steps
    return steps, max(1, steps // 10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("plan", help="pretraining steps that fit a budget, from a calibration run")
    pl.add_argument("--metrics", required=True, help="the calibration run's metrics.csv (logged every step)")
    pl.add_argument("--seconds", type=float, required=True, help="the calibration phase's wall time")
    pl.add_argument("--budget-s", type=float, required=True, help="seconds the real run may take")
    pl.add_argument("--max-steps", type=int, required=True)
    rp = sub.add_parser("report", help="the JSON record and table of a finished run")
    rp.add_argument("--work", required=True, help="the script's working folder (WORK)")
    rp.add_argument("--out", required=True, help="JSON file to write")
    rp.add_argument("--planned-steps", type=int, required=True, help="pretraining steps the run was given")
    rp.add_argument("--objective", required=True)
    rp.add_argument("--model", required=True)
    rp.add_argument("--device", required=True, help="cpu or cuda, as the script ran")
    args = ap.parse_args(argv)
    if args.cmd == "plan":
        steps, warmup = plan_steps(Path(args.metrics), args.seconds, args.budget_s, args.max_steps)
        print(steps, warmup)
        return 0
    work = Path(args.work)
    records, missing = collect(work)
    pretrain = read_pretrain(work / "pretrain" / "metrics.csv")
    phases = read_phases(work / "phases.tsv")
    doc = {"device": device_name(args.device), "model": args.model, "objective": args.objective,
           "planned_steps": args.planned_steps, "pretrain": pretrain,
           "pretrain_stopped_by_time_limit": phases.get("pretrain", {}).get("rc") == 124,
           "phases": phases, "records": records, "missing": missing, "table": table(records)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"device {doc['device']}; {args.model} {args.objective}: pretraining reached step "
          f"{pretrain.get('last_step')} of {args.planned_steps} (loss {pretrain.get('first_loss')} -> "
          f"{pretrain.get('last_loss')})" + (", stopped by its time limit" if doc["pretrain_stopped_by_time_limit"]
                                             else ""))
    print(doc["table"])
    if missing:
        print("not finished (see the log): " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
