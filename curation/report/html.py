"""The report page: one self-contained ``index.html`` (inline CSS, no JavaScript, no external URLs).

Rendering only: it takes stats.json's dict, the plot ``src`` strings and the sample grids, and
returns the HTML text. Every value from the run is escaped.
"""
from __future__ import annotations

import datetime as _dt
from html import escape
from typing import Any, Iterable

from .grids import Grid

MAX_SHARD_ROWS = 500

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;color:#c5cad6;font-size:12px;word-break:break-all}
nav{padding:8px 28px;background:#e9ecf2;font-size:13px} nav a{margin-right:16px;color:#29497a}
main{padding:8px 28px 40px} section{margin:22px 0}
h2{font-size:18px;border-bottom:2px solid #d5dae3;padding-bottom:4px} h3{font-size:15px;margin:18px 0 6px}
h4{font-size:13px;margin:12px 0 4px;color:#39414f}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px} .card span{font-size:12px;color:#5d6675}
table{border-collapse:collapse;background:#fff;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#eef1f6} td.l,th.l{text-align:left}
.reasons{font-size:12px;text-align:left;color:#4a2d2a}
.plots{display:flex;flex-wrap:wrap;gap:10px}
.plots figure{margin:0;background:#fff;border:1px solid #dde1e8;border-radius:4px;padding:4px}
.tiles{display:flex;flex-wrap:wrap;gap:6px}
.tile{margin:0;width:136px;background:#fff;border:1px solid #dde1e8;border-radius:4px;padding:3px;font-size:11px}
.tile img{display:block;max-width:128px;max-height:128px;margin:0 auto}
.tile.kept{border-color:#8cc49f} .tile.rejected{border-color:#e0a397} .tile.rep{border-color:#3b8b5a;border-width:2px}
.tile figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;text-align:center}
.tile small{color:#6b7280}
.noimg{height:96px;display:flex;align-items:center;justify-content:center;text-align:center;background:#f1f2f4;
 color:#7a808a;font-size:11px;padding:4px}
.note{color:#6b5d2f;background:#fbf6e4;border-left:3px solid #e2c15b;padding:4px 10px;font-size:12.5px}
.bad{color:#b3261e;font-weight:600}
.groups{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.group{background:#fbfbfc;border:1px solid #e3e6ec;border-radius:6px;padding:0 8px 8px;max-width:100%}
"""


def fmt_int(x: Any) -> str:
    return "–" if x is None else f"{int(x):,}"


def fmt_bytes(x: Any) -> str:
    if x is None:
        return "–"
    x = float(x)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} TiB"


def fmt_num(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{float(x):,.{digits}f}"


def fmt_pct(a: Any, b: Any) -> str:
    return "–" if not b else f"{100.0 * float(a) / float(b):.1f}%"


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>' if text else ""


def _cards(totals: dict[str, Any]) -> str:
    items = [
        ("entered", fmt_int(totals.get("entered"))),
        ("kept", fmt_int(totals.get("kept"))),
        ("keep rate", fmt_pct(totals.get("kept"), totals.get("entered"))),
        ("shards", fmt_int(totals.get("shards"))),
        ("shard bytes", fmt_bytes(totals.get("shard_bytes"))),
        ("image bytes", fmt_bytes(totals.get("image_bytes"))),
        ("run time", f"{fmt_num(totals.get('seconds'))} s" if totals.get("seconds") else "–"),
        ("throughput", f"{fmt_num(totals.get('images_per_second'))} img/s" if totals.get("images_per_second") else "–"),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in items) + "</div>"


def _funnel_table(funnel: list[dict[str, Any]], stage_seconds: dict[str, float]) -> str:
    if not funnel:
        return _note("No stage decisions in this directory, so there is no funnel.")
    rows = []
    for f in funnel:
        secs = stage_seconds.get(f["stage"], stage_seconds.get(f["name"]))
        reasons = ", ".join(f"{escape(str(r))}: {c:,}" for r, c in f["reasons"].items()) or "–"
        rows.append(f'<tr><td class="l">{escape(f["stage"])}</td><td>{fmt_int(f["in"])}</td>'
                    f'<td>{fmt_int(f["kept"])}</td><td>{fmt_int(f["rejected"])}</td>'
                    f'<td>{fmt_pct(f["kept"], f["in"])}</td>'
                    + (f"<td>{fmt_num(secs)}</td>" if stage_seconds else "") +
                    f'<td class="reasons">{reasons}</td></tr>')
    return ('<table><tr><th class="l">stage</th><th>in</th><th>kept</th><th>rejected</th><th>kept %</th>'
            + ("<th>seconds</th>" if stage_seconds else "") +
            '<th class="l">rejection reasons</th></tr>' + "".join(rows) + "</table>")


def _phases(totals: dict[str, Any]) -> str:
    """Wall time per pipeline phase (run.json), when recorded."""
    phases = totals.get("phase_seconds") or {}
    if not phases:
        return ""
    total = totals.get("seconds") or sum(phases.values())
    cells = "".join(f'<tr><td class="l">{escape(k)}</td><td>{fmt_num(v)}</td><td>{fmt_pct(v, total)}</td></tr>'
                    for k, v in phases.items())
    return ('<h3>Run time per phase (run.json)</h3><table><tr><th class="l">phase</th><th>seconds</th>'
            f'<th>share</th></tr>{cells}<tr><th class="l">total</th><th>{fmt_num(total)}</th><th></th></tr></table>')


def _figure(src: str, alt: str) -> str:
    return f'<figure><img src="{escape(src, quote=True)}" alt="{escape(alt, quote=True)}"></figure>'


def _boxes(grids: list[Grid]) -> str:
    """Small grids (a reason's examples, a duplicate cluster) side by side in boxes."""
    if not grids:
        return ""
    return '<div class="groups">' + "".join(f'<div class="group">{_tiles(g)}</div>' for g in grids) + "</div>"


def _tiles(grid: Grid) -> str:
    out = []
    for t in grid.tiles:
        cap = f"{escape(t.caption)}" + (f"<br><small>{escape(t.detail)}</small>" if t.detail else "")
        if t.src:
            body = f'<img src="{escape(t.src, quote=True)}" alt="{escape(t.caption, quote=True)}" loading="eager">'
        else:
            body = f'<div class="noimg">{escape(t.note or "no preview")}</div>'
        out.append(f'<figure class="tile {escape(t.css)}">{body}<figcaption title="{escape(t.caption, quote=True)}">'
                   f"{cap}</figcaption></figure>")
    return f"<h4>{escape(grid.title)}</h4>{_note(grid.note)}" + ('<div class="tiles">' + "".join(out) + "</div>"
                                                                 if out else "")


def _shard_table(shards: list[dict[str, Any]]) -> str:
    if not shards:
        return _note("No shards: nothing was kept.")
    rows = []
    for s in shards[:MAX_SHARD_ROWS]:
        flag = ""
        if s.get("manifest_samples") is not None and s["manifest_samples"] != s["samples"]:
            flag = f' <span class="bad">(manifest says {fmt_int(s["manifest_samples"])})</span>'
        if not s.get("on_disk", True):
            flag += ' <span class="bad">(file missing)</span>'
        res = (f"{fmt_num(s.get('mean_width'), 0)} × {fmt_num(s.get('mean_height'), 0)}"
               if s.get("mean_width") is not None else "–")
        rows.append(f'<tr><td class="l">{escape(s["name"])}</td><td>{fmt_int(s["samples"])}{flag}</td>'
                    f'<td>{fmt_bytes(s.get("tar_bytes"))}</td><td>{fmt_bytes(s.get("image_bytes"))}</td>'
                    f'<td>{res}</td></tr>')
    more = ""
    if len(shards) > MAX_SHARD_ROWS:
        more = _note(f"showing the first {MAX_SHARD_ROWS} of {len(shards):,} shards; stats.json lists all")
    total_s = sum(s["samples"] for s in shards)
    total_b = sum(int(s.get("tar_bytes") or 0) for s in shards)
    total_i = sum(int(s.get("image_bytes") or 0) for s in shards)
    return (more + '<table><tr><th class="l">shard</th><th>samples</th><th>shard bytes</th><th>image bytes</th>'
            '<th>mean resolution</th></tr>' + "".join(rows) +
            f'<tr><th class="l">total ({len(shards):,} shards)</th><th>{fmt_int(total_s)}</th>'
            f'<th>{fmt_bytes(total_b)}</th><th>{fmt_bytes(total_i)}</th><th></th></tr></table>')


def render_page(doc: dict[str, Any], funnel_src: str | None,
                plot_groups: list[tuple[str, list[tuple[str, str]], list[str]]],
                kept: list[Grid], kept_note: str, rejected: list[Grid], duplicates: list[Grid],
                dup_note: str = "") -> str:
    """``plot_groups``: (group title, [(src, alt)], [names of columns absent in this run])."""
    totals = doc.get("totals", {})
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts: list[str] = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>Curation report · {escape(str(doc.get('run_dir', '')))}</title><style>{CSS}</style></head><body>",
        f"<header><h1>Curation report</h1><p>{escape(str(doc.get('run_dir', '')))} · generated {now}</p></header>",
        '<nav><a href="#totals">Totals</a><a href="#funnel">Funnel</a><a href="#distributions">Distributions</a>'
        '<a href="#samples">Samples</a><a href="#shards">Shards</a><a href="#notes">Notes</a></nav><main>',
        f'<section id="totals"><h2>Totals</h2>{_cards(totals)}{_phases(totals)}</section>',
        '<section id="funnel"><h2>Funnel</h2>',
    ]
    if funnel_src:
        parts.append(f'<div class="plots">{_figure(funnel_src, "stage funnel")}</div>')
    parts.append(_funnel_table(doc.get("funnel", []), totals.get("stage_seconds", {})))
    parts.append("</section>")

    parts.append('<section id="distributions"><h2>Distributions</h2>')
    parts.append('<p>Stage plots count every image that entered the stage (green kept, red rejected); '
                 '"kept samples" plots come from index.parquet (blue).</p>')
    for title, figs, missing in plot_groups:
        parts.append(f"<h3>{escape(title)}</h3>")
        if figs:
            parts.append('<div class="plots">' + "".join(_figure(s, a) for s, a in figs) + "</div>")
        if missing:
            parts.append(_note("Not plotted (column not recorded in this run, or no values): " + ", ".join(missing)))
        elif not figs:
            parts.append(_note("Nothing recorded for this group in this run."))
    parts.append("</section>")

    parts.append('<section id="samples"><h2>Samples</h2><h3>Kept images per shard</h3>' + _note(kept_note))
    parts.extend(_tiles(g) for g in kept)
    parts.append("<h3>Rejected examples per reason</h3>")
    if not rejected:
        parts.append(_note("No stage rejected anything."))
    parts.append(_boxes(rejected))
    parts.append("<h3>Duplicate clusters</h3>" + _note(dup_note))
    if not duplicates and not dup_note:
        parts.append(_note("No duplicate clusters found."))
    parts.append(_boxes(duplicates))
    parts.append("</section>")

    parts.append(f'<section id="shards"><h2>Shards</h2>{_shard_table(doc.get("shards", []))}</section>')
    notes: Iterable[str] = doc.get("notes", [])
    parts.append('<section id="notes"><h2>Notes</h2>')
    notes = list(notes)
    if notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    else:
        parts.append("<p>Nothing unusual.</p>")
    parts.append(f'<p>Statistics computed in {fmt_num(doc.get("stats_seconds"), 2)} s; full numbers in '
                 '<code>stats.json</code> beside this page.</p></section></main></body></html>')
    return "\n".join(parts)
