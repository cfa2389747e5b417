"""Training checkpoints: atomic writes, discovery of the latest one, safe loading, sharded (DCP) saves.

Two layouts, both named by N = optimizer steps completed:

- ``RUN/ckpt/step_NNNNNNNN.pt``: one file (single-process and DDP runs) holding only tensors and
  plain Python values, so it loads with ``torch.load(weights_only=True)``: model, teacher, optimizer
  and scheduler state, step, config (YAML text), every rank's RNG state and data position.
- ``RUN/ckpt/step_NNNNNNNN.dcp/``: a ``torch.distributed.checkpoint`` directory (FSDP runs): each
  rank writes and reads only its own shards of model, teacher and optimizer state; the small
  remainder (step, config, scheduler, RNG, data position) is ``meta.pt`` inside it, written by rank
  0. DCP reshards on load, so a run saved on N ranks resumes on M (including one process), and
  ``load_checkpoint`` gathers it into the same full dict as a ``.pt`` file (for export).

Both are written under a temporary name and renamed when complete, so an interrupted save never
leaves a truncated checkpoint under a real name; ``remove_stale_temps`` deletes what an interrupted
save left behind (the trainer calls it when it starts). Checkpoints beyond ``keep`` are pruned.
"""
from __future__ import annotations

import re
import shutil
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from humans.shared.atomic import AtomicFile, atomic_write
from humans.shared.log import get_logger

log = get_logger("pretrain.checkpoint")

CKPT_DIR = "ckpt"
FORMAT = "humans-pretrain-ckpt-v1"
META_FILE = "meta.pt"
_NAME_RE = re.compile(r"^step_(\d{8})\.(pt|dcp)$")
_TMP_RE = re.compile(r"^step_\d{8}\.(pt|dcp)\.tmp\d*$")


def ckpt_path(run_dir: str | Path, step: int, sharded: bool = False) -> Path:
    return Path(run_dir) / CKPT_DIR / f"step_{step:08d}.{'dcp' if sharded else 'pt'}"


def is_sharded(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / META_FILE).is_file()


def _complete(p: Path) -> bool:
    return p.is_file() if p.suffix == ".pt" else is_sharded(p)


def list_checkpoints(path: str | Path) -> list[Path]:
    """Complete checkpoints (files and DCP directories) under a run or ckpt directory, oldest first."""
    path = Path(path)
    folder = path / CKPT_DIR if (path / CKPT_DIR).is_dir() else path
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME_RE.match(p.name) and _complete(p)]
    return sorted(found, key=lambda p: (p.name[:13], p.suffix))


def latest_checkpoint(path: str | Path) -> Path | None:
    """``path`` itself when it is a checkpoint, else the newest checkpoint under it (or None)."""
    path = Path(path)
    if path.is_file() or is_sharded(path):
        return path
    found = list_checkpoints(path)
    return found[-1] if found else None


def step_of(path: str | Path) -> int:
    m = _NAME_RE.match(Path(path).name)
    return int(m.group(1)) if m else -1


def remove_stale_temps(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files/directories of saves that never completed (a killed process)."""
    folder = Path(run_dir) / CKPT_DIR
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _TMP_RE.match(p.name)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        log.warning("removed %s, left by an interrupted checkpoint save", p)
    return stale


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_write(path) as fh:
        torch.save(obj, fh)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` to ``path`` (a ``.pt`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save({"format": FORMAT, **state}, path)
    return path


class ShardedSave:
    """One DCP save in flight: ``tensors`` written by every rank into ``path.tmp``, then renamed.

    Collective: every rank constructs it and calls ``finish()`` (which waits for an asynchronous
    write, has rank 0 add ``meta.pt`` and rename the directory, and synchronises the ranks).
    """

    def __init__(self, tensors: dict[str, Any], meta: dict[str, Any], path: str | Path, is_main: bool,
                 process_group=None, use_async: bool = False):
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.meta = {"format": FORMAT, **meta}
        self.is_main = is_main
        self.pg = process_group
        self._dist = dist.is_available() and dist.is_initialized()
        if is_main:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
        self._barrier()
        self.future: Future | None = None
        if use_async:
            self.future = dcp.async_save(tensors, checkpoint_id=str(self.tmp), process_group=process_group)
        else:
            dcp.save(tensors, checkpoint_id=str(self.tmp), process_group=process_group)

    def _barrier(self) -> None:
        if self._dist:
            import torch.distributed as dist

            dist.barrier(group=self.pg)

    def finish(self) -> Path:
        if self.future is not None:
            self.future.result()
            self.future = None
        self._barrier()                      # every rank's shards are on disk
        if self.is_main:
            _atomic_torch_save(self.meta, self.tmp / META_FILE)
            AtomicFile(self.path, self.tmp).commit()  # a folder saved twice (e.g. a rerun) is replaced
        self._barrier()
        return self.path


def load_sharded_into(path: str | Path, tensors: dict[str, Any], process_group=None) -> dict[str, Any]:
    """Load a DCP checkpoint in place into ``tensors`` (sharded or full state dicts, any world size);
    returns its ``meta.pt``."""
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    meta = _load_meta(path)
    try:
        dcp.load(tensors, checkpoint_id=str(path), process_group=process_group)
    except Exception as exc:  # noqa: BLE001 - re-raised with the directory name
        raise ValueError(f"{path}: sharded checkpoint does not match this run ({type(exc).__name__}: "
                         f"{str(exc)[:400]})") from None
    return meta


def _load_meta(path: Path) -> dict[str, Any]:
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise ValueError(f"{path}: not a complete sharded checkpoint (no {META_FILE})")
    try:
        meta = torch.load(meta_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{meta_file}: not readable ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_file}: not a pretrain checkpoint (expected format {FORMAT!r})")
    return meta


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint as one full dict on this process (``weights_only=True``); errors name the
    file. A DCP directory is gathered from all its shards (model, teacher, optimizer + meta)."""
    path = Path(path)
    if path.is_dir():
        from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

        meta = _load_meta(path)
        try:
            tensors = _load_state_dict_from_keys(checkpoint_id=str(path))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path}: not a readable sharded checkpoint ({type(exc).__name__}: {exc})") from None
        return {**meta, **tensors}
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
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    return old
