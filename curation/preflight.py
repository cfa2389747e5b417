"""Up-front checks of a curation run, done before the output folder is made and before any Ray work.

The config itself is validated at load (``curation.config``); here every file it names is checked:
the embedding stage has weights (our backbone, an open_clip checkpoint, or an explicit random_init),
and its checkpoint exists, loads safely and fits the model strictly; the embedding architecture
exists; the YOLO detector weights exist and are a regular ``.pt`` file. A failure is a
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


def check_backbone_checkpoint(path: str) -> None:
    """``path`` is a backbone checkpoint of ours (``humans-pretrain export``) that loads strictly."""
    import torch
    from safetensors import safe_open

    from humans.shared.backbone.io import check_state, load_config_from
    from humans.shared.backbone.model import Backbone

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"embedding.backbone {path!r} (--embedding-backbone) does not exist or is not a file; "
                          f"expected a `humans-pretrain export` checkpoint (.safetensors)")
    try:  # keys and shapes from the file header against the model built on the meta device: no weights read
        cfg = load_config_from(p)
        with safe_open(str(p), framework="pt") as f:
            shapes = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        with torch.device("meta"):
            model = Backbone(cfg)
        check_state({k: v.shape for k, v in model.state_dict().items()}, shapes, str(p), f"config '{cfg.name}'")
    except Exception as exc:  # noqa: BLE001 - every reason a file is not our checkpoint is the same user error
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"embedding.backbone {path!r} (--embedding-backbone) was not loaded: {line}; expected a "
                          f"`humans-pretrain export` checkpoint (.safetensors with its config)") from None


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
    if emb is not None and emb.enabled:
        from .stages import embedding as emb_stage

        why = emb.weights_problem()
        if why:
            raise ConfigError(why)
        if emb.embedder == "backbone":
            if emb.backbone:
                check_backbone_checkpoint(emb.backbone)
                checked.append(f"embedding.backbone {emb.backbone} (strict load)")
        elif emb.checkpoint:
            check_embedding_checkpoint(emb.model, emb.checkpoint, emb.image_size)
            checked.append(f"embedding.checkpoint {emb.checkpoint} (strict load into {emb.model})")
        else:
            emb_stage.check_model_name(emb.model)
    return checked
