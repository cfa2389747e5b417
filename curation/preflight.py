"""Up-front checks of a curation run, done before the output folder is made and before any Ray work.

The config itself is validated at load (``curation.config``); here every file it names is checked:
the embedding checkpoint exists, loads safely and fits the model strictly; the embedding
architecture exists; the YOLO detector weights exist and are a regular ``.pt`` file. A failure is a
``ConfigError`` with one paragraph naming the file, what is wrong and what is expected, so a bad
input costs seconds, not a run of stages 0-5 and a Ray traceback.
"""
from __future__ import annotations

import os
from pathlib import Path

from humans.shared.config import ConfigError

from .config import PipelineConfig


_PASSED: set[tuple] = set()  # checkpoints that passed in this process: (model, path, size, mtime, size)


def check_embedding_checkpoint(model: str, checkpoint: str, image_size: int | None) -> None:
    """Strict check of ``checkpoint`` for ``model``; a file that passed once in this process (same
    size and mtime) is not loaded again (the CLI checks before the pipeline module is imported)."""
    from .stages import embedding as emb_stage

    try:
        st = os.stat(checkpoint)
        key = (model, os.path.realpath(checkpoint), st.st_size, st.st_mtime_ns, image_size)
    except OSError:
        key = None
    if key is not None and key in _PASSED:
        return
    emb_stage.check_checkpoint(model, checkpoint, image_size)
    if key is not None:
        _PASSED.add(key)


def check_files(cfg: PipelineConfig) -> list[str]:
    """Check every path and checkpoint named in ``cfg``; returns what was checked (for the log)."""
    checked = []
    person = cfg.stage("person")
    if person is not None and person.weights and person.detector in ("yolo", "auto"):
        p = Path(person.weights)
        if not p.exists():
            raise ConfigError(f"person.weights {person.weights!r} (--detector-weights) does not exist; "
                              f"expected an ultralytics YOLO checkpoint (.pt)")
        if not p.is_file():
            raise ConfigError(f"person.weights {person.weights!r} (--detector-weights) is not a regular file; "
                              f"expected an ultralytics YOLO checkpoint (.pt)")
        if p.suffix != ".pt":
            raise ConfigError(f"person.weights {person.weights!r} (--detector-weights) has suffix "
                              f"{p.suffix!r}; expected an ultralytics YOLO checkpoint (allowed: .pt)")
        checked.append(f"person.weights {p}")
    emb = cfg.stage("embedding")
    if emb is not None:
        from .stages import embedding as emb_stage

        if emb.checkpoint:
            check_embedding_checkpoint(emb.model, emb.checkpoint, emb.image_size)
            checked.append(f"embedding.checkpoint {emb.checkpoint} (strict load into {emb.model})")
        else:
            emb_stage.check_model_name(emb.model)
    return checked
