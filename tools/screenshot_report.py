#!/usr/bin/env python
"""Open a curation report (``report/index.html``) in headless Chromium, screenshot it, check it.

Checks, each failing the script (exit 1) with a message:
  * the DOM Chromium built (``--dump-dom``) has every ``<img>`` with a ``data:`` src that decodes
    as an image, or a relative src naming a file that exists beside the page;
  * no ``<script>`` element and no http(s) resource (the page must work offline, without JS);
  * Chromium's own log (``--enable-logging=stderr --v=0``) has no console error, uncaught
    exception or failed resource load for the page;
  * the screenshot is not blank.

Usage:
  python tools/screenshot_report.py REPORT_DIR_OR_HTML --out docs/img/report.png [--width 1280]
      [--height 2200] [--max-kb 480] [--chromium /usr/bin/chromium]

The screenshot is shrunk (and palette-quantised) until it is under ``--max-kb``.
"""
from __future__ import annotations

import argparse
import base64
import io
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--disable-extensions"]
LOG_ERROR = re.compile(r"CONSOLE.*(error|uncaught)|Uncaught|Failed to load resource|ERR_FILE_NOT_FOUND|"
                       r"net::ERR_", re.IGNORECASE)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str | None] = []
        self.scripts = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src"))
        if tag == "script":
            self.scripts += 1
        for attr in ("src", "href"):
            v = a.get(attr) or ""
            if tag != "a" and re.match(r"^(https?:)?//", v):
                self.external.append(f"<{tag} {attr}={v[:80]}>")


def find_chromium(explicit: str | None) -> str:
    for c in [explicit, "chromium", "chromium-browser", "google-chrome"]:
        if c and (p := shutil.which(c)):
            return p
    sys.exit("chromium not found: install Debian's package (apt-get install -y chromium) or pass --chromium")


def run_chromium(binary: str, args: list[str], profile: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_dom(dom: str, page_dir: Path) -> tuple[list[str], int]:
    """Problems with the page's images and resources; returns (problems, number of images)."""
    col = _Collect()
    col.feed(dom)
    problems: list[str] = []
    for i, src in enumerate(col.imgs):
        if not src:
            problems.append(f"img #{i}: no src")
        elif src.startswith("data:"):
            head, _, payload = src.partition(",")
            if ";base64" not in head:
                problems.append(f"img #{i}: data URI is not base64 ({head[:40]})")
                continue
            try:
                Image.open(io.BytesIO(base64.b64decode(payload, validate=True))).verify()
            except Exception as exc:  # noqa: BLE001 - any failure to decode is a problem to report (ultralytics, when imported, patches Image.open and raises other types)
                problems.append(f"img #{i}: data URI does not decode as an image ({exc})")
        elif re.match(r"^[a-z]+:", src) and not src.startswith("file:"):
            problems.append(f"img #{i}: external image {src[:80]}")
        else:
            path = page_dir / src.removeprefix("file://")
            if not path.is_file():
                problems.append(f"img #{i}: missing file {src}")
    if col.scripts:
        problems.append(f"page has {col.scripts} <script> element(s); the report must need no JavaScript")
    problems.extend(f"external resource {e}" for e in col.external)
    return problems, len(col.imgs)


def shrink_png(path: Path, max_kb: int) -> None:
    """Save ``path`` again under ``max_kb``: as it is if it fits, else palette-quantised, else smaller."""
    im = Image.open(path).convert("RGB")
    scale = 1.0
    while True:
        small = im.resize((int(im.width * scale), int(im.height * scale)), Image.LANCZOS) if scale < 1 else im
        for candidate in (small, small.quantize(colors=256, method=Image.Quantize.MEDIANCUT)):
            buf = io.BytesIO()
            candidate.save(buf, format="PNG", optimize=True)
            if buf.tell() <= max_kb * 1024 or scale < 0.2:
                path.write_bytes(buf.getvalue())
                return
        scale *= 0.85


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", help="the report directory (holding index.html) or the html file itself")
    ap.add_argument("--out", default="docs/img/report.png", help="where to write the screenshot PNG")
    ap.add_argument("--width", type=int, default=1280, help="browser window width in CSS pixels")
    ap.add_argument("--height", type=int, default=2200, help="window height: how much of the page is captured")
    ap.add_argument("--max-kb", type=int, default=480, help="shrink the screenshot until it is under this size")
    ap.add_argument("--chromium", default=None, help="chromium binary (default: found on PATH)")
    args = ap.parse_args(argv)

    html = Path(args.report)
    if html.is_dir():
        html = html / "index.html"
    if not html.is_file():
        print(f"no report page at {html}", file=sys.stderr)
        return 2
    html = html.resolve()
    binary = find_chromium(args.chromium)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        prof1, prof2 = Path(tmp) / "p1", Path(tmp) / "p2"
        prof1.mkdir()
        prof2.mkdir()
        dom = run_chromium(binary, ["--dump-dom", html.as_uri()], prof1)
        if dom.returncode != 0 or "<html" not in dom.stdout:
            problems.append(f"chromium --dump-dom failed (exit {dom.returncode}): {dom.stderr[-400:]}")
            n_img = 0
        else:
            dom_problems, n_img = check_dom(dom.stdout, html.parent)
            problems += dom_problems
        shot_path = Path(tmp) / "shot.png"
        shot = run_chromium(binary, [f"--screenshot={shot_path}", f"--window-size={args.width},{args.height}",
                                     html.as_uri()], prof2)
        for line in (dom.stderr + "\n" + shot.stderr).splitlines():
            if LOG_ERROR.search(line):
                problems.append(f"chromium log: {line.strip()[:300]}")
        if not shot_path.is_file():
            problems.append(f"no screenshot written (exit {shot.returncode}): {shot.stderr[-400:]}")
        else:
            with Image.open(shot_path) as im:
                lo, hi = im.convert("L").getextrema()
            if hi - lo < 16:
                problems.append(f"the screenshot is blank (grey levels {lo}..{hi}): the page did not render")
            shutil.copyfile(shot_path, out)
            shrink_png(out, args.max_kb)
    print(f"page: {html}\nimages on the page: {n_img}")
    if out.is_file():
        with Image.open(out) as im:
            print(f"screenshot: {out} ({im.width}x{im.height}, {out.stat().st_size / 1024:.0f} KiB)")
    if problems:
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("OK: every image is present and decodes; no script, no external resource, no console error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
