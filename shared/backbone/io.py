"""Backbone checkpoints as safetensors: weights plus the full config (JSON) in the file metadata.

Loading reads safetensors only (no pickle), rebuilds the model from the stored config and loads the
weights strictly, so a file and its architecture cannot drift apart. Writes are atomic.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from humans.shared.config import validate

from .config import BackboneConfig
from .model import Backbone

FORMAT = "humans-backbone-v1"


def save_backbone(model: Backbone, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights and config to ``path`` (safetensors, atomic replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": model.config.model_dump_json()}
    meta.update(extra or {})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a readable safetensors file: {exc}") from None


def load_config_from(path: str | Path) -> BackboneConfig:
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{path}: not a backbone checkpoint (metadata format={meta.get('format')!r}, "
                         f"expected {FORMAT!r} with a 'config' entry)")
    try:
        data = json.loads(meta["config"])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: config metadata is not JSON: {exc}") from None
    if isinstance(data.get("default_input"), list):
        data["default_input"] = tuple(data["default_input"])
    return validate(BackboneConfig, data, source=str(path))


def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> Backbone:
    """Rebuild the backbone stored at ``path`` and load its weights (strict) onto ``device``."""
    cfg = load_config_from(path)
    state = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        for key in f.keys():
            state[key] = f.get_tensor(key)
    with torch.device(device):
        model = Backbone(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match config '{cfg.name}': missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model
