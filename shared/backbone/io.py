"""Backbone checkpoints as safetensors: weights plus the full config (JSON) in the file metadata.

Loading reads safetensors only (no pickle), rebuilds the model from the stored config and loads the
weights strictly, so a file and its architecture cannot drift apart. Writes are atomic.

``load_state_strict`` is the one strict loader every checkpoint load in the project uses: a
mismatch raises ``CheckpointMismatch`` naming every missing key, every unexpected key and every
shape mismatch, and nothing is loaded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from humans.shared.atomic import atomic_path
from humans.shared.config import validate

from .config import BackboneConfig
from .model import Backbone

FORMAT = "humans-backbone-v1"


class CheckpointMismatch(ValueError):
    """A checkpoint's tensors do not match the module they are loaded into."""


def check_state(expected: Mapping[str, torch.Size | tuple], state: Mapping[str, torch.Tensor],
                source: str, what: str = "module") -> None:
    """Raise ``CheckpointMismatch`` unless ``state`` has exactly the keys and shapes of ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs {what} {tuple(expected[k])}"
              for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != tuple(expected[k])]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing keys {missing}", f"{len(unexpected)} unexpected keys {unexpected}"]
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches [{'; '.join(shapes)}]")
        raise CheckpointMismatch(f"{source}: weights do not match {what}: " + "; ".join(parts))


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str,
                      what: str | None = None) -> None:
    """Load ``state`` into ``module`` only if keys and shapes match exactly (see ``check_state``)."""
    expected = {k: v.shape for k, v in module.state_dict().items()}
    check_state(expected, state, source, what or type(module).__name__)
    module.load_state_dict(state, strict=True)


def save_backbone(model: Backbone, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights and config to ``path`` (safetensors, atomic replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": model.config.model_dump_json()}
    meta.update(extra or {})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
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
    load_state_strict(model, state, str(path), f"config '{cfg.name}'")
    return model
