"""Logging and progress bars shared by every command: one format, tqdm bars that step aside
when output is not a terminal (CI logs stay readable)."""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_CONFIGURED = False


def get_logger(name: str) -> logging.Logger:
    """Return a logger under the ``humans`` hierarchy, configuring the root handler once."""
    global _CONFIGURED
    if not _CONFIGURED:
        level = os.environ.get("HUMANS_LOG_LEVEL", "INFO").upper()
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root = logging.getLogger("humans")
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = False
        _CONFIGURED = True
    return logging.getLogger(f"humans.{name}")


def progress_disabled() -> bool:
    """True when HUMANS_NO_PROGRESS is set to anything but '', '0', 'false' or 'no'."""
    return os.environ.get("HUMANS_NO_PROGRESS", "").strip().lower() not in ("", "0", "false", "no")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap ``items`` in a tqdm progress bar (the project's one progress library; quiet under
    HUMANS_NO_PROGRESS=1)."""
    disable = progress_disabled()
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True,
                    mininterval=1.0 if sys.stderr.isatty() else 10.0)
