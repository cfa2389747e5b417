"""Backbone configuration: the pydantic ``BackboneConfig`` and the named Sapiens2 family.

The four large rows reproduce the Sapiens2 table (0.4B / 0.8B / 1.5B / 5.1B parameters within 5 %):
SwiGLU feed-forward width 4 x hidden (not 8/3 x hidden, which gives only 0.30B for the first row)
and grouped-query attention with a quarter of the heads as key/value heads in the middle third of
the layers. ``docs/backbone.md`` shows the arithmetic.
"""
from __future__ import annotations

from typing import Any

from pydantic import model_validator

from humans.shared.config import ConfigError, StrictModel, validate


class BackboneConfig(StrictModel):
    """Every architectural choice of a backbone; saved verbatim in checkpoint metadata."""

    name: str = "custom"
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    kv_heads: int = 16            # key/value heads used by the GQA layers (middle third)
    ffn_dim: int = 4096           # SwiGLU hidden width
    num_registers: int = 0
    layerscale_init: float | None = None   # None: no LayerScale
    qk_norm: bool = True
    bias: bool = True             # biases of the linear layers
    norm_eps: float = 1e-6
    rope_theta: float = 100.0     # RoPE base; coordinates are in patch units
    hierarchical: bool = True     # False: plain global ViT (no windows, pool_stride 1)
    window_layers: int = 6        # first K layers attend inside windows
    window_size: int = 16         # window side in patches (a multiple of pool_stride)
    pool_stride: int = 2          # CLS-guided pooling stride after the windowed layers
    drop_path_rate: float = 0.0
    default_input: tuple[int, int] = (1024, 768)   # (H, W) used by model_table

    @model_validator(mode="after")
    def _check(self) -> "BackboneConfig":
        def bad(key: str, value: Any, allowed: str) -> ConfigError:
            return ConfigError(f"backbone config '{self.name}': key '{key}' has value {value!r}: "
                               f"allowed {allowed}")
        if self.embed_dim % self.num_heads:
            raise bad("embed_dim", self.embed_dim, f"a multiple of num_heads={self.num_heads}")
        head_dim = self.embed_dim // self.num_heads
        if head_dim % 4:
            raise bad("embed_dim", self.embed_dim, "head_dim (embed_dim / num_heads) a multiple of 4 "
                      "(2D RoPE splits it in four)")
        if self.kv_heads < 1 or self.num_heads % self.kv_heads:
            raise bad("kv_heads", self.kv_heads, f"a divisor of num_heads={self.num_heads}")
        for key in ("patch_size", "depth", "ffn_dim", "pool_stride", "window_size", "in_chans"):
            if getattr(self, key) < 1:
                raise bad(key, getattr(self, key), ">= 1")
        if self.num_registers < 0:
            raise bad("num_registers", self.num_registers, ">= 0")
        if self.hierarchical:
            if not 0 <= self.window_layers < self.depth:
                raise bad("window_layers", self.window_layers, f"0 .. depth-1 = {self.depth - 1}")
            if self.window_size % self.pool_stride:
                raise bad("window_size", self.window_size,
                          f"a multiple of pool_stride={self.pool_stride}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise bad("drop_path_rate", self.drop_path_rate, "0 <= rate < 1")
        return self

    # derived values -------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def effective_stride(self) -> int:
        return self.pool_stride if self.hierarchical else 1

    @property
    def effective_window_layers(self) -> int:
        return self.window_layers if self.hierarchical else 0

    @property
    def cell_size(self) -> int:
        return self.patch_size * self.effective_stride

    def gqa_layers(self) -> range:
        """Layers that use ``kv_heads`` key/value heads: the middle third (rounded)."""
        return range(round(self.depth / 3), round(2 * self.depth / 3))

    def layer_kv_heads(self, i: int) -> int:
        return self.kv_heads if i in self.gqa_layers() else self.num_heads


def _large(name: str, dim: int, depth: int, heads: int, window_layers: int) -> BackboneConfig:
    return BackboneConfig(name=name, embed_dim=dim, depth=depth, num_heads=heads, kv_heads=heads // 4,
                          ffn_dim=4 * dim, window_layers=window_layers, window_size=16, pool_stride=2,
                          layerscale_init=1e-4)


_CONFIGS: dict[str, BackboneConfig] = {
    # tests and CPU demos. tiny: 6x6 and 14x14 patch grids (96 px / 224 px) work with window 4
    # (2x2 cells of stride 2), padded internally to 8x8 / 16x16 patches.
    "sapiens2-tiny": BackboneConfig(name="sapiens2-tiny", embed_dim=64, depth=4, num_heads=4,
                                    kv_heads=2, ffn_dim=256, window_layers=2, window_size=4,
                                    pool_stride=2, default_input=(224, 224)),
    "sapiens2-mini": BackboneConfig(name="sapiens2-mini", embed_dim=128, depth=6, num_heads=4,
                                    kv_heads=2, ffn_dim=512, window_layers=2, window_size=8,
                                    pool_stride=2, num_registers=2, layerscale_init=1e-4,
                                    default_input=(224, 224)),
    "sapiens2-small": BackboneConfig(name="sapiens2-small", embed_dim=384, depth=12, num_heads=6,
                                     kv_heads=2, ffn_dim=1536, window_layers=3, window_size=8,
                                     pool_stride=2, layerscale_init=1e-4, default_input=(224, 224)),
    # the Sapiens2 table
    "sapiens2-0.4b": _large("sapiens2-0.4b", 1024, 24, 16, 6),
    "sapiens2-0.8b": _large("sapiens2-0.8b", 1280, 32, 16, 8),
    "sapiens2-1b": _large("sapiens2-1b", 1536, 40, 24, 10),
    "sapiens2-5b": _large("sapiens2-5b", 2432, 56, 32, 14),
}

# nominal parameter counts of the Sapiens2 table (tests check ours within 5 %)
NOMINAL_PARAMS: dict[str, float] = {"sapiens2-0.4b": 0.4e9, "sapiens2-0.8b": 0.8e9,
                                    "sapiens2-1b": 1.5e9, "sapiens2-5b": 5.1e9}


def list_configs() -> list[str]:
    """Names of every named config, smallest first."""
    return list(_CONFIGS)


def get_config(name: str, **overrides: Any) -> BackboneConfig:
    """A copy of the named config with ``overrides`` applied (validated; errors name the key)."""
    if name not in _CONFIGS:
        raise ConfigError(f"unknown backbone '{name}': allowed {', '.join(_CONFIGS)}")
    data = _CONFIGS[name].model_dump()
    data.update(overrides)
    return validate(BackboneConfig, data, source=f"backbone '{name}'")
