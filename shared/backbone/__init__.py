"""The backbone model family (Sapiens2-style ViT with hierarchical attention), shared by pretrain
and heads: build by name, save/load safetensors checkpoints, FLOPs and memory estimates.

Public API (docs/CONTRACTS.md): ``build_backbone``, ``list_configs``, ``get_config``,
``save_backbone``, ``load_backbone``, ``Backbone``, ``BackboneOutput``, ``BackboneConfig``,
``model_table``, ``print_model_table``; ``load_state_strict`` / ``CheckpointMismatch`` (the strict
loader of every checkpoint), ``load_released`` / ``convert_released`` (released Sapiens2 weights).
"""
from __future__ import annotations

from typing import Any

from .config import BackboneConfig, get_config, list_configs
from .model import Backbone, BackboneOutput


def build_backbone(name: str, **overrides: Any) -> Backbone:
    """Build the named backbone (randomly initialised) with config ``overrides`` applied.

    Build under ``with torch.device("meta"):`` to count parameters without allocating memory.
    """
    return Backbone(get_config(name, **overrides))


from .io import CheckpointMismatch, load_backbone, load_state_strict, save_backbone  # noqa: E402
from .released import convert_released, load_released  # noqa: E402
from .flops import count_flops, memory_estimate, model_table, print_model_table  # noqa: E402

__all__ = ["Backbone", "BackboneConfig", "BackboneOutput", "CheckpointMismatch", "build_backbone",
           "convert_released", "count_flops", "load_released", "load_state_strict",
           "get_config", "list_configs", "load_backbone", "memory_estimate", "model_table",
           "print_model_table", "save_backbone"]
