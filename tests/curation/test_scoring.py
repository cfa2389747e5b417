"""Per-stage scoring against a labelled pool: a duplicate removed by the embedding stage after pHash
missed it is a correct removal (precision), while recall counts only the items labelled for the stage."""
from __future__ import annotations

import pandas as pd

from humans.curation.decisions import write_decisions
from humans.curation.scoring import score_run

LABELS = [  # key, category, expected_reject_stage, dup_group, dup_of
    ("a", "person", "", "g1", ""), ("a_near0", "near_dup", "phash", "g1", "a"),
    ("a_near1", "near_dup", "embedding", "g1", "a"), ("b", "person", "", "", ""),
    ("c", "person", "", "g2", ""), ("c_near0", "near_dup", "embedding", "g2", "c"),
]


def _labelled_pool(tmp_path, labels):
    """A pool folder holding only ``labels.parquet``; returns (pool, run dir, keys)."""
    pool, run = tmp_path / "pool", tmp_path / "run"
    pool.mkdir()
    pd.DataFrame([dict(key=k, file=f"images/{k}.jpg", category=c, has_person=True, n_persons=1,
                       expected_reject_stage=e, dup_group=g, dup_of=o, notes="")
                  for k, c, e, g, o in labels]).to_parquet(pool / "labels.parquet")
    return pool, run, [r[0] for r in labels]


def test_dedup_precision_counts_duplicates_an_earlier_stage_missed(tmp_path):
    pool, run, keys = _labelled_pool(tmp_path, LABELS)
    for stage in ("read", "resolution", "quality", "person", "framing", "phash"):
        write_decisions(run, stage, "t0", [dict(key=k, source=k, kept=True, reason="") for k in keys])
    # pHash missed a_near0; the embedding stage removes it, a_near1 and (wrongly) b; it misses c_near0
    rejected = {"a_near0", "a_near1", "b"}
    write_decisions(run, "embedding", "t0", [dict(key=k, source=k, kept=k not in rejected,
                                                  reason="embedding_duplicate" if k in rejected else "")
                                             for k in keys])
    emb = score_run(run, pool)["stages"]["embedding"]
    assert emb["rejected"] == 3 and emb["expected"] == 2
    assert emb["precision"] == round(2 / 3, 4)  # a_near0 and a_near1 are duplicates of a; b is not
    assert emb["correct"] == 1 and emb["recall"] == 0.5  # a_near1 found, c_near0 missed
    assert score_run(run, pool)["stages"]["phash"]["recall"] == 0.0


def test_recall_over_reached_skips_a_copy_whose_mates_fell_earlier(tmp_path):
    """d's only other copy, d_near0 (labelled for the embedding stage), reaches the stage alone after the
    person stage dropped d: keeping it is right, so it is not a miss of recall over reached items."""
    labels = LABELS + [("d", "person", "", "g3", ""), ("d_near0", "near_dup", "embedding", "g3", "d")]
    pool, run, keys = _labelled_pool(tmp_path, labels)
    for stage in ("read", "resolution", "quality", "framing", "phash"):
        write_decisions(run, stage, "t0", [dict(key=k, source=k, kept=True, reason="") for k in keys])
    write_decisions(run, "person", "t0", [dict(key=k, source=k, kept=k != "d", reason="no_person" if k == "d" else "")
                                          for k in keys])
    rejected = {"a_near1", "c_near0"}  # both removable duplicates found; d_near0 kept (the last copy of d)
    write_decisions(run, "embedding", "t0", [dict(key=k, source=k, kept=k not in rejected,
                                                  reason="embedding_duplicate" if k in rejected else "")
                                             for k in keys if k != "d"])
    emb = score_run(run, pool)["stages"]["embedding"]
    assert emb["expected"] == 3 and emb["correct"] == 2 and emb["precision"] == 1.0
    assert emb["recall"] == round(2 / 3, 4)        # over every item labelled for the stage
    assert emb["recall_reached"] == 1.0              # d_near0 had nothing left to be a duplicate of
