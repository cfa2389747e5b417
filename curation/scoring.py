"""Per-stage precision and recall of a finished run against a labelled pool (``labels.parquet``).

For stage S, the rejections are the keys S rejected (``decode`` = the ``00_read`` rejections) and
the truth is the keys whose ``expected_reject_stage`` is S:

- precision = correct rejections / rejections of S; recall = correct rejections / truth of S;
- ``recall_reached`` counts only the truth items that reached S (not rejected by an earlier stage); for
  a dedup stage, only those that still had a group mate there (a copy whose mates all fell earlier is
  the last one left, and keeping it is right);
- for the dedup stages (phash, embedding) which copy of a duplicate group is dropped is a choice
  (highest resolution, then largest file, then key), so within a ``dup_group`` a rejection counts
  towards recall up to the number of members labelled for S (``min`` per group), and towards
  precision up to the group's members that reached S less the one copy that stays: a duplicate the
  pHash stage missed and the embedding stage removed is a correct removal, not a false one.

The final kept set is also scored (precision / recall of "kept" against the items that should be
kept, a kept copy standing in for its dropped original). ``by_category`` shows, for every stage,
which labelled categories it rejected: the first place to look when tuning thresholds.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from humans.shared import storage

from .config import STAGE_ORDER
from .decisions import read_decisions
from .writer import read_index

SCORED_STAGES = ("decode",) + STAGE_ORDER
DEDUP_STAGES = ("phash", "embedding")


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score_run(run_dir: str | Path, pool_dir: str | Path, json_path: str | Path | None = None) -> dict:
    """Score ``run_dir`` against ``pool_dir/labels.parquet``; writes ``RUN/scores.json`` (or json_path)."""
    labels = storage.read_parquet(storage.join(str(pool_dir), "labels.parquet")).to_pandas()
    expected = dict(zip(labels["key"], labels["expected_reject_stage"].fillna("")))
    group = dict(zip(labels["key"], labels["dup_group"].fillna("")))
    category = dict(zip(labels["key"], labels["category"]))
    rejected_at: dict[str, str] = {}
    for stage in ("read",) + STAGE_ORDER:
        df = read_decisions(run_dir, stage, columns=["key", "kept"])
        name = "decode" if stage == "read" else stage
        for key in df.loc[~df["kept"].astype(bool), "key"]:
            rejected_at.setdefault(key, name)
    order = {s: i for i, s in enumerate(SCORED_STAGES)}
    stages: dict[str, dict] = {}
    for s in SCORED_STAGES:
        rej = [k for k, st in rejected_at.items() if st == s]
        truth = [k for k, e in expected.items() if e == s]
        reached_all = [k for k in expected if order.get(rejected_at.get(k, ""), 99) >= order[s]]
        if s in DEDUP_STAGES:
            tp = 0
            rej_g = Counter(group.get(k, "") for k in rej)
            truth_g = Counter(group.get(k, "") for k in truth)
            surplus_g = Counter(group.get(k, "") for k in reached_all)
            ok = 0
            for g, n in rej_g.items():
                if g:
                    tp += min(n, truth_g.get(g, 0))
                    ok += min(n, surplus_g[g] - 1)
        else:
            tp = ok = len(set(rej) & set(truth))
        reached = [k for k in truth if order.get(rejected_at.get(k, ""), 99) >= order[s]]
        removable = len(reached)
        if s in DEDUP_STAGES:  # a copy whose group mates all fell earlier is the last one: nothing to remove
            reached_g = Counter(group.get(k, "") for k in reached)
            removable = sum(min(n, surplus_g[g] - 1) if g else n for g, n in reached_g.items())
        stages[s] = {"rejected": len(rej), "expected": len(truth), "correct": tp,
                     "precision": _ratio(ok, len(rej)), "recall": _ratio(tp, len(truth)),
                     "recall_reached": _ratio(min(tp, removable), removable),
                     "by_category": dict(Counter(category.get(k, "?") for k in rej))}
    try:
        kept = set(read_index(run_dir)["key"])
    except FileNotFoundError:
        kept = set()
    should = {k for k, e in expected.items() if e == ""}
    dup_of = dict(zip(labels["key"], labels["dup_of"].fillna("")))
    ident = {k: (dup_of[k] or k) for k in expected}
    kept_ids = {ident.get(k, k) for k in kept}
    good = kept_ids & should
    result = {"run": str(run_dir), "pool": str(pool_dir), "stages": stages,
              "kept": {"kept": len(kept), "should_keep": len(should), "correct": len(good),
                       "precision": _ratio(len({k for k in kept if ident.get(k, k) in should}), len(kept)),
                       "recall": _ratio(len(good), len(should)),
                       "unexpected_kept": sorted(k for k in kept if ident.get(k, k) not in should),
                       "lost": sorted(should - kept_ids)}}
    storage.write_json(str(json_path) if json_path else storage.join(str(run_dir), "scores.json"), result)
    return result


def format_table(scores: dict) -> str:
    lines = [f"{'stage':<11}{'rejected':>9}{'expected':>9}{'correct':>8}{'precision':>10}{'recall':>8}"
             f"{'recall*':>8}  rejected categories"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for s, r in scores["stages"].items():
        cats = ", ".join(f"{c}={n}" for c, n in sorted(r["by_category"].items()))
        lines.append(f"{s:<11}{r['rejected']:>9}{r['expected']:>9}{r['correct']:>8}{fmt(r['precision']):>10}"
                     f"{fmt(r['recall']):>8}{fmt(r['recall_reached']):>8}  {cats}")
    k = scores["kept"]
    lines.append(f"{'KEPT':<11}{k['kept']:>9}{k['should_keep']:>9}{k['correct']:>8}{fmt(k['precision']):>10}"
                 f"{fmt(k['recall']):>8}")
    lines.append("recall* = recall over the items that reached the stage")
    if k["unexpected_kept"]:
        lines.append("kept but should not be: " + ", ".join(k["unexpected_kept"][:20]))
    if k["lost"]:
        lines.append("lost (should be kept): " + ", ".join(k["lost"][:20]))
    return "\n".join(lines)
