"""Where the page's images go: inlined as ``data:`` URIs (default) or written to ``report/assets/``.

Either way the page needs nothing from the network; ``AssetSink.add`` returns the ``src`` to use.
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

from humans.shared.shards import atomic_write_bytes

_SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


class AssetSink:
    def __init__(self, out_dir: str | Path, inline: bool = True):
        self.out_dir = Path(out_dir)
        self.inline = inline
        self.count = 0
        self.bytes = 0
        self._names: set[str] = set()

    def add(self, name: str, data: bytes, mime: str) -> str:
        self.count += 1
        self.bytes += len(data)
        if self.inline:
            return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
        stem = _SAFE.sub("_", name) or "asset"
        ext = {"image/png": ".png", "image/jpeg": ".jpg"}.get(mime, ".bin")
        fname, n = stem + ext, 1
        while fname in self._names:
            n += 1
            fname = f"{stem}_{n}{ext}"
        self._names.add(fname)
        assets = self.out_dir / "assets"
        assets.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(assets / fname, data)
        return f"assets/{fname}"
