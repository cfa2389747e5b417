"""The main job's summary page (``OUT/summary.html``): curation scores, pretraining loss and collapse
curves, the probe study table with its sentences, pictures, and each head's metrics beside its mean
baseline with prediction | ground-truth pictures. Every number on the page is read from a file the run
wrote, and the page names that file beside it. ``tools/main_job.py`` calls ``write_summary`` last.
"""
from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path


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


def markdown_tables_text(text: str) -> str:
    """``markdown_tables`` of a string."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as fh:
        fh.write(text + "\n")
    try:
        return markdown_tables(Path(fh.name))
    finally:
        os.unlink(fh.name)


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


def epochs_text(run: Path) -> str:
    """" for N epochs" of a head run folder (the length of its ``history.json`` loss list), or ""."""
    try:
        n = len(json.loads((run / "history.json").read_text())["loss"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f" for {n} epoch{'s' if n != 1 else ''}"


def heads_table(out: Path, tasks: tuple[str, ...], best: str, with_random: bool) -> str:
    """An HTML table of the heads' metrics (the rows of ``heads.probe.table_rows``, as in the probe table): the
    best backbone's heads (``OUT/heads``), with ``with_random`` the random-init ones (``OUT/heads_random``), and
    the mean prediction, from their ``metrics.json``; rows no head has a value for are left out."""
    from humans.heads.probe import table_rows

    columns = [(best, out / "heads")] + ([("random init", out / "heads_random")] if with_random else [])
    docs = {}
    for task in tasks:
        for name, folder in columns:
            try:
                docs[task, name] = json.loads((folder / task / "metrics.json").read_text())
            except (OSError, ValueError):
                docs[task, name] = {}
    rows = []
    for task, key, label, higher in table_rows(list(tasks)):
        values = [docs[task, name].get("metrics", {}).get(key) for name, _ in columns]
        values.append(docs[task, best].get("mean_baseline", {}).get(key))
        if not any(isinstance(v, (int, float)) for v in values[:-1]):
            continue
        cells = "".join(f"<td>{v:.4g}</td>" if isinstance(v, (int, float)) else "<td>-</td>" for v in values)
        rows.append(f"<tr><th>{html.escape(label)} {'↑' if higher else '↓'}</th>{cells}</tr>")
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in columns)
    return (f"<table><tr><th>metric</th>{head}<th>mean prediction</th></tr>{''.join(rows)}</table>"
            "<p>(from each head's <code>metrics.json</code>; held-out images)</p>")


def write_summary(out: Path, paths: dict[str, Path], tasks: tuple[str, ...]) -> Path:
    """One HTML page linking every artefact; each number names the file it came from. ``paths``: what
    the main job's steps return (shards, report, study_json, probe_json, pictures, data)."""
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
    for plot_png in sorted((out / "pretrain").glob("*_seed0/plots/collapse.png")):
        parts.append(f"<p>collapse monitors of <code>{rel(plot_png.parent.parent)}</code> (teacher entropy against "
                     f"log K, KL of the teacher's mean output to uniform, per-dimension std):</p>"
                     f"<img src='{rel(plot_png)}' style='max-width:80%'>")
    study_doc = json.loads(paths["study_json"].read_text())
    n_seeds = len(study_doc["preset"]["seeds"])
    parts.append(f"<h2>6. Does pretraining teach? Linear probes, {n_seeds} seed(s) "
                 f"(<code>{rel(paths['study_json'])}</code>)</h2>"
                 "<p>One linear map per token on frozen features of four depths, solved to convergence; the mean "
                 "baseline is the same probe without features (the per-position mean of the training labels). "
                 "Primary metric per task, mean ± std over seeds:</p>"
                 + markdown_tables_text(study_doc["table"])
                 + "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in study_doc["sentences"]) + "</ul>")
    for png, caption in ((paths["pictures"] / "feature_pca.png", "patch-feature PCA of every arm (held-out images)"),
                         *[(q, "MAE reconstructions (held-out images)")
                           for q in sorted(paths["pictures"].glob("reconstruction_*.png"))]):
        if png.exists():
            parts.append(f"<p>{caption}: <code>{rel(png)}</code></p><img src='{rel(png)}' style='max-width:70%'>")
    parts.append(f"<h3>All metrics, seed 0 (<code>{rel(paths['probe_json'])}</code>)</h3>"
                 + markdown_tables(out / "probe.md"))
    best = (out / "best_backbone.txt").read_text().strip()
    have_random = (out / "heads_random").is_dir() and best != "random"
    parts.append(f"<p>Heads trained on the best backbone by probe rank (<code>best_backbone.txt</code>): "
                 f"<b>{html.escape(best)}</b></p><h2>Heads and predictions</h2>"
                 "<p>Each head's figures sit beside the mean prediction of the same held-out images"
                 + (" and beside the same head trained on this job's random-init backbone (<code>heads_random/</code>)."
                    if have_random else
                    ". The same heads on the random-init backbone were not trained in this run (<code>--head-baselines"
                    "</code> adds them, about 7 more minutes); measured apart (benchmarks/results/main_job.md) they "
                    "score better than the 200-step backbone's heads on pose, seg and normals.")
                 + " The heads measure their decoder and data more than pretraining: the probe table above is where "
                 "pretraining is judged.</p>" + heads_table(out, tasks, best, have_random))
    for task in tasks:
        metrics_file = out / "heads" / task / "metrics.json"
        metric_text = ""
        if metrics_file.exists():
            doc = json.loads(metrics_file.read_text())
            m, base = doc.get("metrics", {}), doc.get("mean_baseline", {})
            shown = ", ".join(f"{k} = {v:.4g}" + (f" (mean baseline {base[k]:.4g})" if k in base else "")
                              for k, v in m.items() if "/" not in k and isinstance(v, (int, float)))
            counts = (f"; trained on {doc['train_samples']} images{epochs_text(out / 'heads' / task)}, scored on "
                      f"{doc['val_samples']} held-out ones" if "train_samples" in doc and "val_samples" in doc else "")
            metric_text = f"<p>{html.escape(shown + counts)} (<code>{rel(metrics_file)}</code>)</p>"
        pairs = sorted((out / "predictions" / task).glob("*_vs_truth.png"))
        shown = pairs or sorted((out / "predictions" / task).glob("*.png"))
        imgs = ("<p>prediction (left) beside the ground truth (right), held-out images; normals and pointmap: "
                "in the middle the prediction on the labelled pixels only (what the metrics score):</p>"
                if pairs else "") + \
            "".join(f"<img src='{rel(i)}' style='width:48%;image-rendering:pixelated'>" for i in shown[:4])
        parts.append(f"<h3>{task}</h3>{metric_text}{imgs}")
    preview = sorted((paths["data"] / "preview").glob("*.png"))
    if preview:
        parts.append(f"<h2>5. Synthetic labelled humans</h2><img src='{rel(preview[0])}'>")
    target = out / "summary.html"
    target.write_text("\n".join(parts))
    return target
