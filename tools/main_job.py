"""The main job, end to end: web pool -> curated shards -> pretrained backbones -> five-task probe table.

Each step is one of the project's own commands (``python -m curation|pretrain|heads ...``) run as a
subprocess, so every step can also be run alone with the same outputs. A step whose outputs already
exist is not redone (delete its folder to redo it). The last step writes ``OUT/summary.html``, which
links the shard report, the loss curves, the probe table and prediction overlays; every number on
it is read from a file the run wrote, named beside it.

    humans --out runs/main                              # the same, as the installed `humans` command
    python tools/main_job.py --out runs/main            # the README's first command runs this
    python tools/main_job.py --out /tmp/x --preset tiny # the smallest chain (the test runs this)
"""
from __future__ import annotations

import argparse
import csv
import html
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OBJECTIVES = ("mae", "cl", "mae+cl")
TASKS = ("pose", "seg", "normal", "pointmap", "albedo")


@dataclass(frozen=True)
class Preset:
    """Sizes of every step; ``demo`` is the README's default, ``tiny`` the test's."""

    pool_scale: str
    pretrain_steps: int
    pretrain_batch: int
    n_local: int
    synth_count: int
    synth_size: int
    probe_size: str
    probe_epochs: int
    head_epochs: int
    head_size: str
    threads: int = 2
    extra_pretrain: list[str] = field(default_factory=list)


PRESETS = {
    "demo": Preset(pool_scale="demo", pretrain_steps=120, pretrain_batch=16, n_local=2, synth_count=200,
                   synth_size=192, probe_size="128x96", probe_epochs=20, head_epochs=5, head_size="128x96",
                   extra_pretrain=["--warmup-steps", "15", "--lr", "1e-3", "--prototypes", "1024"]),
    "tiny": Preset(pool_scale="small", pretrain_steps=6, pretrain_batch=4, n_local=2, synth_count=24,
                   synth_size=128, probe_size="64x48", probe_epochs=2, head_epochs=1, head_size="64x48",
                   extra_pretrain=["--warmup-steps", "2", "--log-every", "1", "--prototypes", "256"]),
}


def log(msg: str) -> None:
    print(f"[main-job {time.strftime('%H:%M:%S')}] {msg}", flush=True)


IN_PROCESS = False  # set by --in-process: call each command's main() here instead of a subprocess


def run(cmd: list[str], marker: Path, desc: str) -> None:
    """Run one step (``python -m PKG ARGS...``) unless ``marker`` exists; stop the job on failure."""
    if marker.exists():
        log(f"skip  {desc}: {marker} exists")
        return
    log(f"start {desc}: python {' '.join(cmd)}")
    t0 = time.time()
    if IN_PROCESS and cmd[0] == "-m":
        import importlib

        code = importlib.import_module(f"{cmd[1]}.cli").main(cmd[2:]) or 0
    else:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        code = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env).returncode
    if code != 0:
        raise SystemExit(f"[main-job] step '{desc}' failed with exit code {code}; "
                         f"fix the cause and rerun: finished steps are kept")
    log(f"done  {desc} in {time.time() - t0:.0f} s")


def py(*args: str) -> list[str]:
    return list(args)


def steps(out: Path, p: Preset) -> dict[str, Path]:
    """Run every step; returns the paths the summary reads."""
    pool, shards, report = out / "pool", out / "shards", out / "report"
    run(py("-m", "humans.curation", "demo-pool", "--out", str(pool), "--scale", p.pool_scale),
        pool / "labels.parquet", "1. demo web pool")
    run(py("-m", "humans.curation", "run", "--pipeline", "humans", "--input", str(pool / "images"),
           "--out", str(shards), "--threads", str(p.threads)),
        shards / "manifest.json", "2. six curation stages on a local Ray instance")
    run(py("-m", "humans.curation", "score", str(shards), "--pool", str(pool), "--json", str(out / "scores.json")),
        out / "scores.json", "2b. score every stage against the pool's labels")
    run(py("-m", "humans.curation", "report", str(shards), "--out", str(report)),
        report / "index.html", "3a. shard report")
    verify_log = out / "verify.txt"
    if not verify_log.exists():
        log("start 3b. verify shards")
        proc = subprocess.run([sys.executable, "-m", "humans.curation", "verify", str(shards)], cwd=ROOT,
                              capture_output=True, text=True)
        sys.stdout.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"[main-job] shard verification failed:\n{proc.stdout}{proc.stderr}")
        verify_log.write_text(proc.stdout + proc.stderr)

    backbones: dict[str, Path] = {}
    for objective in OBJECTIVES:
        name = objective.replace("+", "_")
        run_dir = out / "pretrain" / name
        run(py("-m", "humans.pretrain", "train", "--model", "sapiens2-tiny", "--shards", str(shards),
               "--objective", objective, "--steps", str(p.pretrain_steps), "--batch-size", str(p.pretrain_batch),
               "--n-local", str(p.n_local), "--threads", str(p.threads), "--out", str(run_dir), "--resume",
               *p.extra_pretrain),
            run_dir / "ckpt" / f"step_{p.pretrain_steps:08d}.pt", f"4. pretrain sapiens2-tiny ({objective})")
        ckpt = out / "backbones" / f"{name}.safetensors"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        run(py("-m", "humans.pretrain", "export", str(run_dir), "--out", str(ckpt)), ckpt, f"4b. export {objective}")
        backbones[objective] = ckpt
    random_ckpt = out / "backbones" / "random_init.safetensors"
    if not random_ckpt.exists():
        import torch
        from humans.shared.backbone import build_backbone, save_backbone

        torch.manual_seed(0)
        save_backbone(build_backbone("sapiens2-tiny"), random_ckpt)
        log(f"done  4c. random-init sapiens2-tiny (the probe's floor): {random_ckpt}")

    data = out / "synth"
    run(py("-m", "humans.heads", "synth", "--out", str(data), "--count", str(p.synth_count), "--size", str(p.synth_size)),
        data / "meta.json", "5. synthetic labelled humans")
    run(py("-m", "humans.heads", "synth", "--out", str(data / "preview"), "--count", "8", "--size", str(p.synth_size),
           "--preview"), data / "preview" / "meta.json", "5b. synthetic preview sheet")

    probe_json = out / "probe.json"
    probe_args = ["--backbone", f"random={random_ckpt}"]
    probe_args += [a for o in OBJECTIVES for a in ("--backbone", f"{o}={backbones[o]}")]
    run(py("-m", "humans.heads", "probe", *probe_args, "--data", str(data), "--size", p.probe_size,
           "--epochs", str(p.probe_epochs), "--threads", str(p.threads), "--json", str(probe_json),
           "--write-results", str(out / "probe.md"), "--cache-dir", str(out / "feature_cache")),
        probe_json, "6a. linear probes of every backbone on all five tasks")
    best = best_backbone(probe_json)
    log(f"best backbone by probe rank: {best}")
    (out / "best_backbone.txt").write_text(best + "\n")
    best_ckpt = random_ckpt if best == "random" else backbones[best]
    sample_images = sorted((data / "images").glob("*.jpg"))[:2]
    for task in TASKS:
        head_dir = out / "heads" / task
        run(py("-m", "humans.heads", "train", "--task", task, "--backbone", str(best_ckpt), "--data", str(data),
               "--out", str(head_dir), "--epochs", str(p.head_epochs), "--size", p.head_size,
               "--threads", str(p.threads), "--cache-dir", str(out / "feature_cache")),
            head_dir / "head.safetensors", f"6b. train the {task} head on '{best}'")
        run(py("-m", "humans.heads", "predict", "--task", task, "--checkpoint", str(head_dir / "head.safetensors"),
               "--out", str(out / "predictions" / task), *map(str, sample_images)),
            out / "predictions" / task, f"6c. {task} predictions and overlays")
    return {"pool": pool, "shards": shards, "report": report, "probe_json": probe_json, "data": data}


# The main metric of each task in the probe table and whether higher is better.
MAIN_METRIC = {"pose": ("AP", True), "seg": ("mIoU", True), "pointmap": ("si_error", False),
               "normal": ("mean_deg", False), "albedo": ("MAE", False)}


def best_backbone(probe_json: Path) -> str:
    """The pretrained backbone with the best mean rank over the five tasks' main metrics."""
    results = json.loads(probe_json.read_text())["results"]
    labels = [k for k in results if k != "random" and "baseline" not in k]
    ranks = {k: 0 for k in labels}
    for task, (metric, higher_is_better) in MAIN_METRIC.items():
        scored = sorted((-results[k][task][metric] if higher_is_better else results[k][task][metric], k)
                        for k in labels if metric in results[k].get(task, {}))
        for rank, (_, label) in enumerate(scored):
            ranks[label] += rank
    return min(labels, key=lambda k: (ranks[k], k))


def loss_plot(out: Path) -> Path | None:
    """Plot every pretraining run's losses from its metrics.csv into one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted((out / "pretrain").glob("*/metrics.csv"))
    if not runs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for path in runs:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        steps_ = [int(r["step"]) for r in rows]
        for ax, key in zip(axes, ("loss_mae", "loss_cl")):
            vals = [(s, float(r[key])) for s, r in zip(steps_, rows) if r.get(key) not in (None, "", "nan")]
            if vals:
                ax.plot(*zip(*vals), marker=".", label=path.parent.name)
    for ax, title in zip(axes, ("MAE loss (masked cells)", "self-distillation loss")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    target = out / "loss_curves.png"
    fig.savefig(target, dpi=90)
    plt.close(fig)
    return target


def score_table(scores: dict) -> str:
    """The per-stage precision/recall of ``curation score`` as an HTML table."""
    rows = ["<table><tr><th>stage</th><th>rejected</th><th>expected</th><th>precision</th><th>recall</th></tr>"]
    for stage, sc in scores.get("stages", {}).items():
        rows.append(f"<tr><td>{html.escape(stage)}</td><td>{sc.get('rejected')}</td><td>{sc.get('expected')}</td>"
                    f"<td>{sc.get('precision')}</td><td>{sc.get('recall')}</td></tr>")
    kept = scores.get("kept", {})
    rows.append(f"<tr><td><b>kept set</b></td><td>{kept.get('kept')} kept</td><td>{kept.get('should_keep')}</td>"
                f"<td>{kept.get('precision')}</td><td>{kept.get('recall')}</td></tr></table>")
    return "".join(rows)


def markdown_tables(path: Path) -> str:
    """Render a Markdown file's pipe tables as HTML tables (other lines as paragraphs)."""
    if not path.exists():
        return "<p>(missing)</p>"
    out, table = [], []
    for line in path.read_text().splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                table.append(cells)
            continue
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            table = []
        if line.strip() and not line.startswith("#"):
            out.append(f"<p>{html.escape(line)}</p>")
    return "".join(out)


def write_summary(out: Path, paths: dict[str, Path]) -> Path:
    """One HTML page linking every artefact; each number names the file it came from."""
    rel = lambda p: html.escape(os.path.relpath(p, out))  # noqa: E731
    manifest = json.loads((paths["shards"] / "manifest.json").read_text())
    scores = json.loads((out / "scores.json").read_text())
    parts = ["<!doctype html><meta charset='utf-8'><title>humans: main job summary</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}</style>",
             "<h1>humans: main job summary</h1>",
             f"<h2>1-3. Curation</h2><p>{manifest['total_samples']} samples in {len(manifest['shards'])} shards "
             f"(from <code>{rel(paths['shards'] / 'manifest.json')}</code>). "
             f"<a href='{rel(paths['report'] / 'index.html')}'>Shard report</a> · "
             f"verification: <code>{rel(out / 'verify.txt')}</code>.</p>",
             f"<p>Stage precision/recall against the pool's labels (<code>{rel(out / 'scores.json')}</code>):</p>",
             score_table(scores)]
    plot = loss_plot(out)
    if plot:
        sources = ", ".join(rel(p) for p in sorted((out / "pretrain").glob("*/metrics.csv")))
        parts.append(f"<h2>4. Pretraining loss curves</h2><img src='{rel(plot)}'><p>from <code>{sources}</code></p>")
    parts.append(f"<h2>6. Linear probes (<code>{rel(paths['probe_json'])}</code>)</h2>"
                 + markdown_tables(out / "probe.md"))
    parts.append(f"<p>Heads trained on the best backbone by probe rank (<code>best_backbone.txt</code>): "
                 f"<b>{html.escape((out / 'best_backbone.txt').read_text())}</b></p><h2>Heads and predictions</h2>")
    for task in TASKS:
        metrics_file = out / "heads" / task / "metrics.json"
        metric_text = ""
        if metrics_file.exists():
            m = json.loads(metrics_file.read_text()).get("metrics", {})
            shown = ", ".join(f"{k} = {v:.4g}" for k, v in m.items() if "/" not in k and isinstance(v, (int, float)))
            metric_text = f"<p>{html.escape(shown)} (<code>{rel(metrics_file)}</code>)</p>"
        imgs = "".join(f"<img src='{rel(i)}' style='max-width:48%'>"
                       for i in sorted((out / "predictions" / task).glob("*.png"))[:4])
        parts.append(f"<h3>{task}</h3>{metric_text}{imgs}")
    preview = sorted((paths["data"] / "preview").glob("*.png"))
    if preview:
        parts.append(f"<h2>5. Synthetic labelled humans</h2><img src='{rel(preview[0])}'>")
    target = out / "summary.html"
    target.write_text("\n".join(parts))
    return target


def main(argv: list[str] | None = None) -> int:
    from humans.shared.cli import HelpFormatter, add_out, examples

    ap = argparse.ArgumentParser(prog="humans", description=__doc__.split("\n\n    ")[0],
                                 formatter_class=HelpFormatter,
                                 epilog=examples("humans --out runs/main", "humans --out /tmp/x --preset tiny",
                                                 "python tools/main_job.py --out runs/main --fresh"))
    add_out(ap, "output folder of the whole job (default runs/main)", required=False, default="runs/main")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                    help="sizes of every step: demo (README default, ~15 min on 2 cores) or tiny (test)")
    ap.add_argument("--fresh", action="store_true", help="delete --out first and redo every step")
    ap.add_argument("--in-process", action="store_true",
                    help="call each command's main() in this process (faster start; the test uses it) "
                         "instead of one subprocess per step")
    args = ap.parse_args(argv)
    global IN_PROCESS
    IN_PROCESS = args.in_process
    out = Path(args.out).resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    paths = steps(out, PRESETS[args.preset])
    summary = write_summary(out, paths)
    log(f"all steps done in {time.time() - t0:.0f} s; summary page: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
