"""Streaming statistics over a curated run: the stage funnel, score histograms, per-shard table.

Everything is read from parquet with pyarrow in record batches of ``BATCH_ROWS`` rows, only the
columns needed, in two passes (pass 1: counts, ranges, examples; pass 2: histograms over fixed bin
edges). Memory is bounded by the batch size plus small per-shard / per-reason tables, so a report
over millions of rows never holds a whole column, let alone an image. Columns a stage did not record
are skipped and listed in ``notes`` / ``missing_columns`` so the page can say so.

The result is one JSON-ready dict (``stats.json``) plus the few sample keys the grids will show.
"""
from __future__ import annotations

import json
import math
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from humans.shared.schema import DECISION_COLUMNS, IMAGE_EXTENSIONS

from .layout import RunLayout, stage_parquets

BATCH_ROWS = 65536
HIST_BINS = 40
MAX_REASONS = 200              # distinct reasons tracked per stage; more are folded into OTHER_REASON
OTHER_REASON = "(other reasons)"
NO_REASON = "(no reason given)"
STATS_FORMAT = "humans-report-stats-v1"

# Identifier-like numeric columns: counted for duplicates, never histogrammed.
ID_COLUMNS = {"cluster_id", "dup_of", "cluster_rep", "phash", "index", "row", "task_id", "shard_index", "item"}
# Columns every report expects somewhere in a full run (a missing one is named on the page).
EXPECTED_STAGE_COLUMNS = {
    "01_resolution": ("width", "height"),
    "02_quality": ("sharpness", "entropy"),
    "03_person": ("n_persons", "det_score"),
    "04_framing": ("largest_person_frac",),
    "05_phash": ("cluster_size",),
    "06_embedding": ("cluster_size",),
}
# Columns naming the representative a duplicate was merged into (first found is used).
REP_COLUMNS = ("dup_of", "cluster_rep")
INDEX_READ_COLUMNS = ("shard", "width", "height", "image_bytes", "n_persons", "largest_person_frac", "det_score")
INDEX_HIST_COLUMNS = ("width", "height", "aspect", "megapixels", "image_bytes", "n_persons",
                      "largest_person_frac", "det_score")


# ----------------------------------------------------------------------------------------- histograms
@dataclass
class Hist:
    """A histogram built in two passes: ``scan`` (range), ``freeze`` (edges), ``add`` (counts)."""

    name: str
    integer: bool = False
    split: bool = True              # count kept and rejected rows separately
    count: int = 0
    missing: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    edges: np.ndarray | None = None
    kept: np.ndarray | None = None
    rejected: np.ndarray | None = None

    def scan(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        self.missing += int(values.size - finite.size)
        if finite.size:
            self.count += int(finite.size)
            self.total += float(finite.sum(dtype=np.float64))
            self.lo = min(self.lo, float(finite.min()))
            self.hi = max(self.hi, float(finite.max()))

    def freeze(self, bins: int = HIST_BINS) -> None:
        if self.count == 0:
            self.edges = np.array([0.0, 1.0])
        elif self.integer and self.hi - self.lo <= bins:
            self.edges = np.arange(math.floor(self.lo) - 0.5, math.floor(self.hi) + 1.5, 1.0)
        elif self.hi > self.lo:
            self.edges = np.linspace(self.lo, self.hi, bins + 1)
        else:
            self.edges = np.array([self.lo - 0.5, self.lo + 0.5])
        n = len(self.edges) - 1
        self.kept = np.zeros(n, np.int64)
        self.rejected = np.zeros(n, np.int64)

    def add(self, values: np.ndarray, kept: np.ndarray | None) -> None:
        assert self.edges is not None, "freeze() before add()"
        ok = np.isfinite(values)
        if kept is None:
            kept = np.ones(values.shape, bool)
        n, rng = len(self.edges) - 1, (float(self.edges[0]), float(self.edges[-1]))
        for mask, out in ((ok & kept, self.kept), (ok & ~kept, self.rejected)):
            if mask.any():  # equal-width bins given as (n, range): numpy's fast path, no sorting
                out += np.histogram(values[mask], bins=n, range=rng)[0]

    def quantile(self, q: float) -> float | None:
        """Approximate quantile from the histogram (linear inside the bin)."""
        if self.count == 0 or self.edges is None:
            return None
        counts = self.kept + self.rejected
        cum = np.cumsum(counts)
        target = q * cum[-1]
        i = int(np.searchsorted(cum, target))
        i = min(i, len(counts) - 1)
        before = cum[i - 1] if i > 0 else 0
        frac = (target - before) / counts[i] if counts[i] else 0.0
        return float(self.edges[i] + frac * (self.edges[i + 1] - self.edges[i]))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count, "missing": self.missing,
            "min": self.lo if self.count else None, "max": self.hi if self.count else None,
            "mean": self.total / self.count if self.count else None,
            "p05": self.quantile(0.05), "p50": self.quantile(0.5), "p95": self.quantile(0.95),
            "integer": self.integer,
            "bin_edges": [float(x) for x in (self.edges if self.edges is not None else [])],
        }
        if self.split:
            out["kept_counts"] = [int(x) for x in self.kept] if self.kept is not None else []
            out["rejected_counts"] = [int(x) for x in self.rejected] if self.rejected is not None else []
        else:
            out["counts"] = [int(x) for x in self.kept] if self.kept is not None else []
        return out


def _floats(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric arrow column as float64 numpy, nulls as NaN."""
    return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _is_numeric(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_floating(t)) and not pa.types.is_boolean(t)


# ----------------------------------------------------------------------------------------- stages
@dataclass
class StageStats:
    """Everything pass 1 and 2 learn about one stage's decisions."""

    dir_name: str
    files: list[Path]
    columns: dict[str, pa.DataType] = field(default_factory=dict)
    rows: int = 0
    kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    hists: dict[str, Hist] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    # duplicates
    size_rows: Counter = field(default_factory=Counter)     # cluster_size -> rows with that size
    dup_groups: Counter = field(default_factory=Counter)    # group id -> rows rejected as duplicates
    group_col: str | None = None
    chosen_groups: list[str] = field(default_factory=list)
    group_members: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        parts = self.dir_name.split("_", 1)
        return parts[1] if len(parts) == 2 and parts[0].isdigit() else self.dir_name


def _stage_columns(files: list[Path], unreadable: list[str]) -> dict[str, pa.DataType]:
    cols: dict[str, pa.DataType] = {}
    for f in files:
        try:
            schema = pq.read_schema(f)
        except Exception as exc:  # noqa: BLE001 - a broken file is reported, not fatal
            unreadable.append(f"{f}: {exc}")
            continue
        for fld in schema:
            if fld.name not in cols or pa.types.is_null(cols[fld.name]):
                cols[fld.name] = fld.type
    return cols


def _iter_batches(files: list[Path], wanted: list[str], bad: set[str]) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    """(file number, first row's number in that file, batch) over ``files``, reading only ``wanted``."""
    for fi, f in enumerate(files):
        if str(f) in bad:
            continue
        try:
            pf = pq.ParquetFile(f)
            present = [c for c in wanted if c in pf.schema_arrow.names]
            if not present:
                continue
            row = 0
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=present):
                yield fi, row, batch
                row += batch.num_rows
        except Exception:  # noqa: BLE001 - already reported by _stage_columns / skipped
            continue


def _lookup_rows(files: list[Path], where: dict[int, list[int]], columns: list[str]) -> dict[tuple[int, int], dict]:
    """Values of ``columns`` at the given (file, row) positions, reading only the files concerned."""
    out: dict[tuple[int, int], dict] = {}
    for fi, rows in sorted(where.items()):
        try:
            pf = pq.ParquetFile(files[fi])
            present = [c for c in columns if c in pf.schema_arrow.names]
            table = pf.read(columns=present).take(pa.array(sorted(set(rows)), pa.int64()))
        except Exception:  # noqa: BLE001 - a file unreadable now was reported already
            continue
        for r, rec in zip(sorted(set(rows)), table.to_pylist()):
            out[(fi, r)] = rec
    return out


def _kept_mask(batch: pa.RecordBatch) -> np.ndarray:
    if "kept" not in batch.schema.names:
        return np.ones(batch.num_rows, bool)
    col = pc.fill_null(pc.cast(batch.column("kept"), pa.bool_()), False)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=bool)


def _str_list(batch: pa.RecordBatch, name: str, idx: np.ndarray) -> list[str | None]:
    if name not in batch.schema.names or idx.size == 0:
        return [None] * int(idx.size)
    return [None if v is None else str(v) for v in batch.column(name).take(pa.array(idx)).to_pylist()]


def _scan_stage(st: StageStats, n_examples: int, n_groups: int) -> None:
    """Pass 1: funnel counts, reasons with examples, ranges, duplicate groups."""
    bad = {u.split(":", 1)[0] for u in st.unreadable}
    numeric = [c for c, t in st.columns.items()
               if _is_numeric(t) and c not in ID_COLUMNS and c not in DECISION_COLUMNS]
    for c in numeric:
        st.hists[c] = Hist(c, integer=pa.types.is_integer(st.columns[c]))
    st.group_col = next((c for c in (*REP_COLUMNS, "cluster_id") if c in st.columns), None)
    wanted = ["kept", "reason", *numeric, *[c for c in (st.group_col, "cluster_size") if c and c in st.columns]]
    positions: dict[str, list[tuple[int, int]]] = {}
    for fi, row0, batch in _iter_batches(st.files, wanted, bad):
        n = batch.num_rows
        kept = _kept_mask(batch)
        st.rows += n
        st.kept += int(kept.sum())
        rej_idx = np.flatnonzero(~kept)
        if rej_idx.size:
            if "reason" in batch.schema.names:
                reasons = pc.fill_null(pc.cast(batch.column("reason").take(pa.array(rej_idx)), pa.string()),
                                       NO_REASON)
                reasons = pc.if_else(pc.equal(reasons, ""), NO_REASON, reasons)
                vc = pc.value_counts(reasons).to_pylist()
            else:
                reasons = pa.array([NO_REASON] * rej_idx.size)
                vc = [{"values": NO_REASON, "counts": int(rej_idx.size)}]
            for item in vc:
                r, c = item["values"], int(item["counts"])
                if r not in st.reasons and len(st.reasons) >= MAX_REASONS:
                    r = OTHER_REASON
                st.reasons[r] += c
                have = positions.setdefault(r, [])
                if len(have) < n_examples and r != OTHER_REASON:
                    sel = np.flatnonzero(np.asarray(pc.equal(reasons, r).to_numpy(zero_copy_only=False)))
                    have.extend((fi, row0 + int(i)) for i in rej_idx[sel[: n_examples - len(have)]])
        for c in numeric:
            if c in batch.schema.names:
                st.hists[c].scan(_floats(batch.column(c)))
        if "cluster_size" in batch.schema.names:
            sizes = pc.drop_null(batch.column("cluster_size"))
            for item in pc.value_counts(sizes).to_pylist():
                if item["values"] is not None:
                    st.size_rows[int(item["values"])] += int(item["counts"])
        if st.group_col in REP_COLUMNS and st.group_col in batch.schema.names and rej_idx.size:
            # rejected rows naming a representative: duplicates of it
            rep = pc.cast(batch.column(st.group_col).take(pa.array(rej_idx)), pa.string())
            dup = pc.filter(rep, pc.fill_null(pc.not_equal(rep, ""), False))
            for item in pc.value_counts(dup).to_pylist():
                g = item["values"]
                st.dup_groups[g] += int(item["counts"])
                if len(st.chosen_groups) < n_groups and g not in st.chosen_groups:
                    st.chosen_groups.append(g)
        elif st.group_col == "cluster_id" and "cluster_id" in batch.schema.names:
            if "cluster_size" in batch.schema.names:
                big = pc.fill_null(pc.greater(batch.column("cluster_size"), 1), False)
                ids = pc.filter(batch.column("cluster_id"), big)
            else:
                ids = batch.column("cluster_id").take(pa.array(rej_idx))
            for item in pc.value_counts(pc.cast(pc.drop_null(ids), pa.string())).to_pylist():
                g = item["values"]
                if "cluster_size" not in batch.schema.names:
                    st.dup_groups[g] += int(item["counts"])
                if len(st.chosen_groups) < n_groups and g not in st.chosen_groups:
                    st.chosen_groups.append(g)
    where: dict[int, list[int]] = {}
    for pos in positions.values():
        for fi, r in pos:
            where.setdefault(fi, []).append(r)
    found = _lookup_rows(st.files, where, ["key", "source"])
    for r, pos in positions.items():
        st.examples[r] = [{"key": str(found[p].get("key") or ""), "source": str(found[p].get("source") or "")}
                          for p in pos if p in found]


def _fill_stage(st: StageStats, bins: int, max_members: int) -> None:
    """Pass 2: histogram counts and the members of the duplicate groups chosen for the grid."""
    for h in st.hists.values():
        h.freeze(bins)
    bad = {u.split(":", 1)[0] for u in st.unreadable}
    wanted = ["kept", *st.hists]
    if st.chosen_groups:
        wanted += [st.group_col, "key"]  # sources are looked up afterwards for the few rows shown
    where: dict[int, list[int]] = {}
    chosen = pa.array(st.chosen_groups, pa.string())
    if not st.hists and not st.chosen_groups:
        return
    for fi, row0, batch in _iter_batches(st.files, wanted, bad):
        kept = _kept_mask(batch)
        for c, h in st.hists.items():
            if c in batch.schema.names:
                h.add(_floats(batch.column(c)), kept)
        if st.chosen_groups and st.group_col in batch.schema.names:
            gcol = pc.cast(batch.column(st.group_col), pa.string())
            mask = pc.fill_null(pc.is_in(gcol, value_set=chosen), False)
            if st.group_col in REP_COLUMNS and "key" in batch.schema.names:
                mask = pc.or_(mask, pc.fill_null(pc.is_in(pc.cast(batch.column("key"), pa.string()),
                                                          value_set=chosen), False))
            idx = np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False)))
            if not idx.size:
                continue
            keys = _str_list(batch, "key", idx)
            groups = _str_list(batch, st.group_col, idx)
            for j, k, g in zip(idx, keys, groups):
                group = g if g in st.chosen_groups else k  # the representative row itself
                members = st.group_members.setdefault(group, [])
                if len(members) < max_members and all(m["key"] != k for m in members):
                    members.append({"key": k or "", "source": "", "kept": bool(kept[j]),
                                    "representative": k == group, "_pos": (fi, row0 + int(j))})
    for members in st.group_members.values():
        for m in members:
            where.setdefault(m["_pos"][0], []).append(m["_pos"][1])
    found = _lookup_rows(st.files, where, ["source"])
    for members in st.group_members.values():
        for m in members:
            m["source"] = str(found.get(m.pop("_pos"), {}).get("source") or "")


def _cluster_sizes(st: StageStats) -> dict[str, Any] | None:
    if st.size_rows:
        sizes = {s: int(round(rows / s)) for s, rows in sorted(st.size_rows.items()) if s >= 1}
        src = "cluster_size"
    elif st.dup_groups:
        counter = Counter(n + 1 for n in st.dup_groups.values()) if st.group_col in REP_COLUMNS \
            else Counter(st.dup_groups.values())
        sizes = dict(sorted(counter.items()))
        src = st.group_col or ""
    else:
        return None
    big = {s: c for s, c in sizes.items() if s > 1}
    return {"from_column": src, "size_counts": {str(s): c for s, c in sizes.items()},
            "clusters_with_duplicates": int(sum(big.values())),
            "images_in_duplicate_clusters": int(sum(s * c for s, c in big.items())),
            "largest_cluster": int(max(sizes)) if sizes else 0}


# ----------------------------------------------------------------------------------------- index
@dataclass
class ShardRow:
    name: str
    samples: int = 0
    image_bytes: int = 0
    sum_w: float = 0.0
    sum_h: float = 0.0
    n_wh: int = 0


def _shard_base(name: str | None) -> str:
    return Path(str(name)).name if name else "(unknown shard)"


def _index_batches(layout: RunLayout, notes: list[str]) -> Iterator[pa.RecordBatch]:
    if layout.index is not None:
        try:
            pf = pq.ParquetFile(layout.index)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"index.parquet unreadable ({exc}); statistics of kept samples read from the shards")
        else:
            cols = [c for c in INDEX_READ_COLUMNS if c in pf.schema_arrow.names]
            yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=cols)
            return
    elif layout.shards:
        notes.append("no index.parquet: statistics of kept samples read from the shards' json metadata")
    yield from _batches_from_shards(layout, notes)


def _batches_from_shards(layout: RunLayout, notes: list[str]) -> Iterator[pa.RecordBatch]:
    """Index-like rows from the ``KEY.json`` members of every shard (used when there is no index)."""
    rows: list[dict[str, Any]] = []
    for shard in layout.shards:
        sizes: dict[str, int] = {}
        metas: dict[str, dict] = {}
        try:
            with tarfile.open(shard, "r:") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    key, _, ext = m.name.partition(".")
                    if ext.lower() in IMAGE_EXTENSIONS:
                        sizes[key] = m.size
                    elif ext == "json":
                        fh = tf.extractfile(m)
                        try:
                            metas[key] = json.loads(fh.read()) if fh else {}
                        except ValueError:
                            metas[key] = {}
        except (tarfile.TarError, OSError, EOFError) as exc:
            notes.append(f"{shard.name}: unreadable while computing statistics ({exc})")
        for key in sorted(set(sizes) | set(metas)):
            meta = metas.get(key, {})
            persons = meta.get("persons") or []
            scores = [p.get("score") for p in persons if isinstance(p, dict) and p.get("score") is not None]
            rows.append({"key": key, "shard": shard.name, "image_bytes": sizes.get(key),
                         "width": meta.get("width"), "height": meta.get("height"),
                         "n_persons": len(persons), "det_score": max(scores) if scores else None})
            if len(rows) >= BATCH_ROWS:
                yield pa.RecordBatch.from_pylist(rows)
                rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows)


def _index_columns(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    names = batch.schema.names
    for c in ("width", "height", "image_bytes", "n_persons", "largest_person_frac", "det_score"):
        if c in names and (_is_numeric(batch.schema.field(c).type) or pa.types.is_null(batch.schema.field(c).type)):
            out[c] = _floats(batch.column(c))
    if "width" in out and "height" in out:
        with np.errstate(divide="ignore", invalid="ignore"):
            out["aspect"] = out["width"] / out["height"]
        out["megapixels"] = out["width"] * out["height"] / 1e6
    return out


def _scan_index(layout: RunLayout, notes: list[str], bins: int) -> tuple[dict[str, ShardRow], dict[str, Hist], int]:
    shards: dict[str, ShardRow] = {}
    hists = {c: Hist(c, integer=c in ("width", "height", "n_persons", "image_bytes"), split=False)
             for c in INDEX_HIST_COLUMNS}
    rows = 0
    seen_cols: set[str] = set()
    for batch in _index_batches(layout, notes):
        rows += batch.num_rows
        if batch.num_rows == 0:
            continue
        cols = _index_columns(batch)
        seen_cols.update(cols)
        for c, v in cols.items():
            hists[c].scan(v)
        shard_col = batch.column("shard") if "shard" in batch.schema.names else pa.nulls(batch.num_rows, pa.string())
        tbl = pa.table({"shard": pc.cast(shard_col, pa.string()),
                        "one": pa.array(np.ones(batch.num_rows, np.int64)),
                        "image_bytes": pa.array(np.nan_to_num(cols.get("image_bytes", np.zeros(batch.num_rows)))),
                        "w": pa.array(cols.get("width", np.full(batch.num_rows, np.nan))),
                        "h": pa.array(cols.get("height", np.full(batch.num_rows, np.nan)))})
        tbl = tbl.append_column("has_wh", pc.cast(pc.and_(pc.is_finite(tbl["w"]), pc.is_finite(tbl["h"])), pa.int64()))
        tbl = tbl.set_column(3, "w", pc.if_else(pc.is_finite(tbl["w"]), tbl["w"], 0.0))
        tbl = tbl.set_column(4, "h", pc.if_else(pc.is_finite(tbl["h"]), tbl["h"], 0.0))
        agg = tbl.group_by("shard").aggregate([("one", "sum"), ("image_bytes", "sum"), ("w", "sum"),
                                               ("h", "sum"), ("has_wh", "sum")])
        for r in agg.to_pylist():
            name = _shard_base(r["shard"])
            s = shards.setdefault(name, ShardRow(name))
            s.samples += int(r["one_sum"])
            s.image_bytes += int(r["image_bytes_sum"] or 0)
            s.sum_w += float(r["w_sum"] or 0)
            s.sum_h += float(r["h_sum"] or 0)
            s.n_wh += int(r["has_wh_sum"] or 0)
    for c in list(hists):
        if c not in seen_cols:
            del hists[c]
    for h in hists.values():
        h.freeze(bins)
    if hists:
        for batch in _index_batches(layout, []):
            for c, v in _index_columns(batch).items():
                if c in hists:
                    hists[c].add(v, None)
    return shards, hists, rows


# ----------------------------------------------------------------------------------------- run.json
def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _run_summary(doc: dict | None) -> dict[str, Any]:
    """Wall time, per-phase and per-stage seconds, and per-stage counts from run.json, as far as recorded."""
    out: dict[str, Any] = {"seconds": None, "phase_seconds": {}, "stage_seconds": {}, "stage_counts": {}}
    if not doc:
        return out
    secs = doc.get("seconds")
    if isinstance(secs, dict):  # {"phase": s, ..., "total": s}
        out["phase_seconds"] = {k: float(v) for k, v in secs.items() if _num(v) is not None and k != "total"}
        total = _num(secs.get("total"))
        out["seconds"] = total if total is not None else (sum(out["phase_seconds"].values()) or None)
    else:
        for k in ("seconds", "wall_seconds", "elapsed_s", "elapsed_seconds", "duration_s", "total_seconds"):
            if _num(doc.get(k)) is not None:
                out["seconds"] = _num(doc[k])
                break
    stages = doc.get("stages")
    items: list[tuple[str, Any]] = []
    if isinstance(stages, dict):
        items = list(stages.items())
    elif isinstance(stages, list):
        items = [(str(s.get("name") or s.get("stage") or i), s) for i, s in enumerate(stages) if isinstance(s, dict)]
    for name, s in items:
        if not isinstance(s, dict):
            continue
        for k in ("seconds", "wall_seconds", "elapsed_s", "time_s"):
            if _num(s.get(k)) is not None:
                out["stage_seconds"][name] = float(s[k])
                break
        if _num(s.get("in")) is not None:
            out["stage_counts"][name] = {"in": int(s["in"]), "out": _num(s.get("out"))}
    return out


# ----------------------------------------------------------------------------------------- entry
@dataclass
class RunStats:
    """``doc`` is what stats.json holds; the rest is what the grids need."""

    doc: dict[str, Any]
    stages: list[StageStats]
    index_hists: dict[str, Hist]


def compute_stats(layout: RunLayout, n_examples: int = 6, n_groups: int = 6, max_members: int = 6,
                  bins: int = HIST_BINS) -> RunStats:
    """Stream over the stage decisions and the index of ``layout``; see the module docstring."""
    t0 = time.perf_counter()
    notes: list[str] = []
    missing_columns: list[str] = []
    stages: list[StageStats] = []
    for d in layout.stage_dirs:
        files = stage_parquets(d)
        st = StageStats(d.name, files)
        st.columns = _stage_columns(files, st.unreadable)
        for u in st.unreadable:
            notes.append(f"stage {d.name}: unreadable decision file skipped: {u}")
        if not files:
            notes.append(f"stage {d.name}: no decision files")
        _scan_stage(st, n_examples, n_groups)
        _fill_stage(st, bins, max_members)
        for c in EXPECTED_STAGE_COLUMNS.get(d.name, ()):
            if c not in st.columns:
                missing_columns.append(f"{d.name}.{c}")
        stages.append(st)
    if not layout.stage_dirs:
        notes.append("no stages/ directory: no funnel (this looks like a shard-only directory)")

    shard_rows, index_hists, index_rows = _scan_index(layout, notes, bins)
    for c in ("width", "height", "n_persons", "largest_person_frac", "det_score"):
        if c not in index_hists and index_rows:
            missing_columns.append(f"index.{c}")

    manifest = layout.manifest_doc() or {}
    man_entries = {e.get("name"): e for e in manifest.get("shards", []) if isinstance(e, dict)}
    if layout.manifest is None and layout.shards:
        notes.append("no manifest.json: shard byte sizes taken from the files")
    names = sorted(set(man_entries) | set(shard_rows) | {p.name for p in layout.shards})
    on_disk = {p.name: p for p in layout.shards}
    shard_table = []
    for name in names:
        r = shard_rows.get(name, ShardRow(name))
        e = man_entries.get(name, {})
        tar_bytes = e.get("bytes")
        if tar_bytes is None and name in on_disk:
            tar_bytes = on_disk[name].stat().st_size
        shard_table.append({
            "name": name, "samples": r.samples, "manifest_samples": e.get("samples"),
            "image_bytes": r.image_bytes, "tar_bytes": tar_bytes, "sha256": e.get("sha256"),
            "mean_width": r.sum_w / r.n_wh if r.n_wh else None,
            "mean_height": r.sum_h / r.n_wh if r.n_wh else None,
            "on_disk": name in on_disk,
        })

    funnel = []
    for st in stages:
        funnel.append({"stage": st.dir_name, "name": st.name, "in": st.rows, "kept": st.kept,
                       "rejected": st.rows - st.kept,
                       "reasons": dict(sorted(st.reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
                       "score_columns": sorted(st.hists), "files": len(st.files)})
    for a, b in zip(funnel, funnel[1:]):
        if b["in"] != a["kept"]:
            notes.append(f"stage {b['stage']} received {b['in']:,} images while {a['stage']} kept {a['kept']:,}: "
                         "the recorded stages do not form a strict chain here (a stage may record failures found "
                         "later, e.g. decode errors after the header-only resolution check)")
    run_info = _run_summary(layout.run_doc())
    for f in funnel:  # run.json's own counts must agree with the decisions on disk
        rc = run_info["stage_counts"].get(f["stage"])
        if rc and (rc["in"] != f["in"] or (rc["out"] is not None and int(rc["out"]) != f["kept"])):
            notes.append(f"stage {f['stage']}: run.json says {rc['in']} in / {rc['out']} kept but the decision "
                         f"files hold {f['in']} in / {f['kept']} kept")
    entered = funnel[0]["in"] if funnel else index_rows
    seconds = run_info["seconds"]
    total_tar = sum(int(s["tar_bytes"] or 0) for s in shard_table)
    duplicates = {st.dir_name: c for st in stages if (c := _cluster_sizes(st)) is not None}
    distributions: dict[str, Any] = {}
    for st in stages:
        for c, h in st.hists.items():
            distributions[f"{st.dir_name}.{c}"] = h.to_json()
    for c, h in index_hists.items():
        distributions[f"index.{c}"] = h.to_json()
    doc = {
        "format": STATS_FORMAT,
        "run_dir": str(layout.root),
        "totals": {
            "entered": int(entered), "kept": int(index_rows),
            "keep_rate": (index_rows / entered) if entered else None,
            "shards": len(shard_table), "shard_bytes": total_tar,
            "image_bytes": int(sum(s["image_bytes"] for s in shard_table)),
            "seconds": seconds,
            "images_per_second": (entered / seconds) if seconds else None,
            "kept_per_second": (index_rows / seconds) if seconds else None,
            "stage_seconds": run_info["stage_seconds"],
            "phase_seconds": run_info["phase_seconds"],
        },
        "funnel": funnel,
        "shards": shard_table,
        "distributions": distributions,
        "duplicates": duplicates,
        "missing_columns": missing_columns,
        "notes": notes,
        "sources": {"index": str(layout.index) if layout.index else None,
                    "manifest": str(layout.manifest) if layout.manifest else None,
                    "run_json": str(layout.run_json) if layout.run_json else None,
                    "stages": [d.name for d in layout.stage_dirs]},
        "stats_seconds": round(time.perf_counter() - t0, 3),
    }
    return RunStats(doc=doc, stages=stages, index_hists=index_hists)


def dumps(doc: dict[str, Any]) -> str:
    """stats.json text: sorted keys, no NaN (replaced by null)."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (np.integer,)):
            return int(x)
        if isinstance(x, (np.floating,)):
            return clean(float(x))
        return x
    return json.dumps(clean(doc), indent=2, sort_keys=True)


__all__ = ["BATCH_ROWS", "Hist", "RunStats", "StageStats", "compute_stats", "dumps"]
