"""The learning study's numbers: probe results of every arm and seed -> records, a table, sentences.

``records(probe_jsons)`` turns the probe JSON of each seed (``{seed: path}``) into the flat list that
``benchmarks/results/study.json`` holds: ``{"arm", "seed", "task", "metric", "value",
"higher_is_better", "primary"}`` for every arm (``random``, ``mae``, ``cl``, ``mae+cl`` and ``mean``,
the mean-prediction baseline), task and metric. ``table`` gives mean +- std per arm of each task's
primary metric; ``sentences`` says per task, from the numbers only, whether pretraining beat random
(by more than two standard deviations of the difference), which arm won, or that the difference
is within noise.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from humans.heads.probe import PRIMARY

ARMS = ("random", "mae", "cl", "mae+cl", "mean")
TASKS = ("pose", "seg", "normal", "pointmap", "albedo")
HIGHER = {"AP": True, "AP50": True, "AP75": True, "PCK@0.1": True, "mIoU": True, "pixel_acc": True,
          "boundary_F1": True, "si_error": False, "kpt_error": False, "mean_deg": False, "median_deg": False,
          "<11.25": True, "<22.5": True, "<30": True, "MAE": False, "PSNR": True}


def records(probe_jsons: dict[int, str | Path]) -> list[dict]:
    out = []
    for seed, path in sorted(probe_jsons.items()):
        results = json.loads(Path(path).read_text())["results"]
        for label, tasks in results.items():
            arm = "mean" if "baseline" in label else label
            for task, metrics in tasks.items():
                for metric, value in metrics.items():
                    if "/" in metric or metric not in HIGHER or not isinstance(value, (int, float)):
                        continue
                    out.append({"arm": arm, "seed": int(seed), "task": task, "metric": metric,
                                "value": float(value), "higher_is_better": HIGHER[metric],
                                "primary": PRIMARY.get(task, (None,))[0] == metric})
    return out


def _stats(vals: list[float]) -> tuple[float, float]:
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def primary_stats(recs: list[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{task: {arm: (mean, std, n_seeds)}}`` of each task's primary metric."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for task in TASKS:
        for arm in ARMS:
            vals = [r["value"] for r in recs if r["primary"] and r["task"] == task and r["arm"] == arm]
            if vals:
                out.setdefault(task, {})[arm] = (*_stats(vals), len(vals))
    return out


def table(recs: list[dict]) -> str:
    st = primary_stats(recs)
    arms = [a for a in ARMS if any(a in v for v in st.values())]
    lines = ["| task (primary metric) | " + " | ".join("mean baseline" if a == "mean" else a for a in arms) + " |",
             "|---|" + "---:|" * len(arms)]
    for task, by_arm in st.items():
        metric, higher = PRIMARY[task]
        best = (max if higher else min)((by_arm[a][0] for a in arms if a in by_arm))
        cells = []
        for a in arms:
            if a not in by_arm:
                cells.append("-")
                continue
            m, sd, n = by_arm[a]
            txt = f"{m:.3f} ± {sd:.3f}" if n > 1 else f"{m:.3f}"
            cells.append(f"**{txt}**" if m == best else txt)
        lines.append(f"| {task} ({metric} {'↑' if higher else '↓'}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _better(a: tuple[float, float, int], b: tuple[float, float, int], higher: bool) -> tuple[float, float]:
    """(improvement of a over b in the metric's good direction, its noise: 2 x std of the difference)."""
    diff = (a[0] - b[0]) if higher else (b[0] - a[0])
    noise = 2 * math.sqrt(a[1] ** 2 + b[1] ** 2)
    return diff, noise


def sentences(recs: list[dict]) -> list[str]:
    """One sentence per task, written from the numbers."""
    st = primary_stats(recs)
    out = []
    for task, by_arm in st.items():
        metric, higher = PRIMARY[task]
        pre = [a for a in ("mae", "cl", "mae+cl") if a in by_arm]
        if not pre or "random" not in by_arm:
            continue
        best = (max if higher else min)(pre, key=lambda a: by_arm[a][0])
        n = by_arm[best][2]
        diff, noise = _better(by_arm[best], by_arm["random"], higher)
        if n < 2:
            verdict = (f"{best} is {'ahead of' if diff > 0 else 'behind'} random by {abs(diff):.3f} "
                       f"(one seed: no error bar, so no claim)")
        elif diff > noise:
            verdict = f"pretraining beat random: {best} by {diff:.3f} (> 2 std of the difference, {noise:.3f})"
        elif diff > 0:
            verdict = f"{best} is ahead of random by {diff:.3f}, within noise (2 std = {noise:.3f})"
        else:
            verdict = f"no pretrained arm beat random ({best} behind by {-diff:.3f}; 2 std = {noise:.3f})"
        if "mean" in by_arm:
            d_mean, _ = _better(by_arm[best], by_arm["mean"], higher)
            verdict += "; it " + ("beats" if d_mean > 0 else "does NOT beat") + " the mean-prediction baseline"
        order = sorted(pre, key=lambda a: by_arm[a][0], reverse=higher)
        out.append(f"{task} ({metric}): {verdict}. Arms best to worst: {' > '.join(order)}.")
    return out


def claims(recs: list[dict]) -> dict:
    """The issue's checks: tasks where mae+cl beats random by > 2 std; arms beating the mean on pose and seg."""
    st = primary_stats(recs)
    beat = [t for t, v in st.items() if "mae+cl" in v and "random" in v and min(v["mae+cl"][2], v["random"][2]) > 1
            and (lambda d: d[0] > d[1])(_better(v["mae+cl"], v["random"], PRIMARY[t][1]))]   # needs >= 2 seeds
    over_mean = {}
    for task in ("pose", "seg"):
        if task in st and "mean" in st[task]:
            over_mean[task] = {a: _better(st[task][a], st[task]["mean"], PRIMARY[task][1])[0] > 0
                               for a in ("mae", "cl", "mae+cl") if a in st[task]}
    return {"maecl_beats_random_2std": beat, "beats_mean": over_mean}


def markdown(doc: dict, machine: str, wall_s: float | None, command: str) -> str:
    """benchmarks/results/study.md: the table, the sentences, the issue's checks, machine and wall time."""
    c = doc.get("claims") or claims(doc["records"])
    seeds = sorted({r["seed"] for r in doc["records"]})
    lines = ["# The learning study: does pretraining teach? (random vs mae vs cl vs mae+cl)", "",
             f"Machine: {machine}. Command: `{command}`" + (f", wall time {wall_s / 60:.0f} min" if wall_s else "")
             + f". Seeds: {seeds} (each seed: its own random init and its own three pretraining runs; the "
             "probe data and split are fixed). Primary metric per task, mean ± std over seeds; the mean "
             "baseline is the same linear probe without features (per-position mean of the training labels).",
             "", table(doc["records"]), ""]
    lines += [f"- {t}" for t in sentences(doc["records"])]
    lines += ["", f"mae+cl beats random by more than two standard deviations on: "
              f"{', '.join(c['maecl_beats_random_2std']) or 'no task'} (the issue asks for three).",
              "Pretrained arms above the mean baseline: "
              + "; ".join(f"{t}: " + ", ".join(f"{a} {'yes' if ok else 'NO'}" for a, ok in v.items())
                          for t, v in c["beats_mean"].items()) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m humans.tools.study OUT`` rebuilds OUT/study.json from the probe JSONs present
    (probe.json = seed 0, probe_seedN.json), e.g. when a study was stopped after some seeds."""
    import argparse
    import re

    from humans.shared.cli import HelpFormatter, examples

    ap = argparse.ArgumentParser(prog="python -m humans.tools.study", description=main.__doc__,
                                 formatter_class=HelpFormatter,
                                 epilog=examples("python -m humans.tools.study runs/study --json study.json"))
    ap.add_argument("run", help="main-job output folder holding probe*.json")
    ap.add_argument("--json", help="where to write (default RUN/study.json)")
    ap.add_argument("--md", help="also write the Markdown summary (benchmarks/results/study.md) here")
    ap.add_argument("--machine", default="2-core x86_64 CPU, no GPU", help="machine line for --md")
    ap.add_argument("--wall-s", type=float, default=None, help="wall time of the run for --md")
    a = ap.parse_args(argv)
    run = Path(a.run)
    found = {0 if p.stem == "probe" else int(re.sub(r"\D", "", p.stem)): p
             for p in run.glob("probe*.json") if re.fullmatch(r"probe(_seed\d+)?", p.stem)}
    if not found:
        raise SystemExit(f"{run}: no probe.json / probe_seedN.json")
    recs = records(found)
    doc = {"seeds": sorted(found), "records": recs, "table": table(recs), "sentences": sentences(recs),
           "claims": claims(recs)}
    out = Path(a.json) if a.json else run / "study.json"
    out.write_text(json.dumps(doc, indent=1))
    if a.md:
        Path(a.md).write_text(markdown(doc, a.machine, a.wall_s, f"humans --preset study --out {run}"))
    print(doc["table"])
    print("\n".join(doc["sentences"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
