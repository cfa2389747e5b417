"""Training checkpoints: atomic writes, discovery of the latest one, safe loading.

A checkpoint is one file ``RUN/ckpt/step_NNNNNNNN.pt`` (N = optimizer steps completed) holding only
tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``: model, teacher,
optimizer and scheduler state, step, config (YAML text), every rank's RNG state and data position.
It is written to a temporary name, fsynced and renamed, so an interrupted save never leaves a
truncated file under a real name; older checkpoints beyond ``keep`` are removed after a save.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

CKPT_DIR = "ckpt"
FORMAT = "humans-pretrain-ckpt-v1"
_NAME_RE = re.compile(r"^step_(\d{8})\.pt$")


def ckpt_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(path: str | Path) -> list[Path]:
    """Checkpoints under a run directory or a ckpt directory, oldest first."""
    path = Path(path)
    folder = path / CKPT_DIR if (path / CKPT_DIR).is_dir() else path
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _NAME_RE.match(p.name)), key=lambda p: p.name)


def latest_checkpoint(path: str | Path) -> Path | None:
    """``path`` itself when it is a checkpoint file, else the newest checkpoint under it (or None)."""
    path = Path(path)
    if path.is_file():
        return path
    found = list_checkpoints(path)
    return found[-1] if found else None


def step_of(path: str | Path) -> int:
    m = _NAME_RE.match(Path(path).name)
    return int(m.group(1)) if m else -1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a pretrain checkpoint (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r}, expected {FORMAT!r})")
    return state


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest checkpoints (keep=0: remove nothing)."""
    if keep <= 0:
        return []
    old = list_checkpoints(run_dir)[:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old
