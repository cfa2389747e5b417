"""Backbone configuration: the pydantic ``BackboneConfig`` and the named Sapiens2 family.

The four large 1K rows (``sapiens2-0.4b`` .. ``-5b``) follow the released Sapiens2 backbone
definition (facebookresearch/sapiens2, ``sapiens/backbones/standalone/sapiens2.py``): plain global
attention at 1024x768, SwiGLU width 4 x hidden, 8 register ("storage") tokens, grouped-query
attention with half the heads as key/value heads in every layer except the first and last 8,
LayerScale 1e-4 on the attention branch only, RoPE over coordinates normalised to [-1, 1] per axis.
Parameters are within 5 % of the seed's table (``docs/backbone.md``).

The ``-4k`` rows add the windowed -> CLS-guided pooling -> global scheme for 3840x2160 input with
the released 4K models' window and stride (4 x 4 patches become one token) and their number of
extra windowed layers (2 / 3 / 4 / 6), placed before the global layers.
"""
from __future__ import annotations

from typing import Any, Literal

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
    kv_heads: int = 16            # key/value heads used by the GQA layers (see gqa_layout)
    gqa_layout: Literal["middle_third", "inner"] = "middle_third"   # which layers use kv_heads
    mha_edge: int = 8             # gqa_layout "inner": the first and last mha_edge layers stay MHA
    ffn_dim: int = 4096           # SwiGLU hidden width
    num_registers: int = 0
    layerscale_init: float | None = None   # None: no LayerScale
    layerscale_mlp: bool = True   # False: LayerScale on the attention branch only (released Sapiens2)
    qk_norm: bool = True
    bias: bool = True             # biases of the linear layers
    norm_eps: float = 1e-6
    rope_theta: float = 100.0     # RoPE base
    rope_coords: Literal["patch", "normalized"] = "patch"   # patch units, or [-1, 1] per axis x 2 pi
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
        if self.mha_edge < 0:
            raise bad("mha_edge", self.mha_edge, ">= 0")
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
        """Layers that use ``kv_heads`` key/value heads: the middle third (rounded), or with
        ``gqa_layout="inner"`` every global-stage layer but the first and last ``mha_edge`` (released Sapiens2)."""
        if self.gqa_layout == "inner":       # counted over the global stage
            first = self.effective_window_layers + self.mha_edge
            return range(first, max(first, self.depth - self.mha_edge))
        return range(round(self.depth / 3), round(2 * self.depth / 3))

    @property
    def attention_scheme(self) -> str:
        if not self.hierarchical:
            return "global"
        return (f"{self.window_layers} windowed ({self.window_size}x{self.window_size}) -> "
                f"pool /{self.pool_stride} -> {self.depth - self.window_layers} global")

    def layer_kv_heads(self, i: int) -> int:
        return self.kv_heads if i in self.gqa_layers() else self.num_heads


def _large(name: str, dim: int, depth: int, heads: int) -> BackboneConfig:
    """A released 1K Sapiens2 backbone: plain global ViT (see the module docstring)."""
    return BackboneConfig(name=name, embed_dim=dim, depth=depth, num_heads=heads, kv_heads=heads // 2,
                          gqa_layout="inner", mha_edge=8, ffn_dim=4 * dim, num_registers=8,
                          layerscale_init=1e-4, layerscale_mlp=False, rope_coords="normalized",
                          hierarchical=False)


def _large_4k(base: BackboneConfig, window_layers: int) -> BackboneConfig:
    """The 4K variant of ``base``: ``window_layers`` windowed layers (4x4-patch windows) in front of
    the global layers, then CLS-guided pooling with stride 4 (one token per window), as the
    released 4K models' tokenizer; GQA stays on the same global layers."""
    data = base.model_dump()
    data.update(name=f"{base.name}-4k", depth=base.depth + window_layers, hierarchical=True,
                window_layers=window_layers, window_size=4, pool_stride=4,
                default_input=(2160, 3840))
    return BackboneConfig(**data)


_BASE = {
    "sapiens2-0.4b": _large("sapiens2-0.4b", 1024, 24, 16),
    "sapiens2-0.8b": _large("sapiens2-0.8b", 1280, 32, 16),
    "sapiens2-1b": _large("sapiens2-1b", 1536, 40, 24),
    "sapiens2-5b": _large("sapiens2-5b", 2432, 56, 32),
}
# extra windowed (tokenizer) layers of the released 4K models
_WINDOW_LAYERS_4K = {"sapiens2-0.4b": 2, "sapiens2-0.8b": 3, "sapiens2-1b": 4, "sapiens2-5b": 6}


_CONFIGS: dict[str, BackboneConfig] = {
    # tests and CPU demos (hierarchical, to keep CPU runs fast). tiny: 6x6 and 14x14 patch grids
    # (96 px / 224 px) work with window 4 (2x2 cells of stride 2), padded internally to 8x8 / 16x16.
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
    # the learning study (issue #12): plain global ViTs with 8 px patches, so a 128x96 probe input
    # gives a 16x12 token grid (body parts stay apart); same blocks as the family (RMSNorm, SwiGLU,
    # QK-norm, GQA in the middle third, 2D RoPE in patch units so pretraining and probe sizes may differ)
    "study-s8": BackboneConfig(name="study-s8", patch_size=8, embed_dim=128, depth=6, num_heads=4, kv_heads=2,
                               ffn_dim=384, hierarchical=False, default_input=(128, 96)),
    "study-m8": BackboneConfig(name="study-m8", patch_size=8, embed_dim=384, depth=12, num_heads=6, kv_heads=2,
                               ffn_dim=1024, hierarchical=False, default_input=(128, 96)),
    # the Sapiens2 table: 1K plain global ViTs, then their 4K hierarchical variants
    **_BASE,
    **{f"{n}-4k": _large_4k(c, _WINDOW_LAYERS_4K[n]) for n, c in _BASE.items()},
}

# the seed's table: parameters, and FLOPs (its convention is not stated; see flops.py)
NOMINAL_PARAMS: dict[str, float] = {"sapiens2-0.4b": 0.4e9, "sapiens2-0.8b": 0.8e9,
                                    "sapiens2-1b": 1.5e9, "sapiens2-5b": 5.1e9}
SEED_FLOPS: dict[str, float] = {"sapiens2-0.4b": 1.26e12, "sapiens2-0.8b": 2.59e12,
                                "sapiens2-1b": 4.72e12, "sapiens2-5b": 15.7e12}


def seed_row(name: str) -> str | None:
    """The seed table row a named config corresponds to (``-4k`` variants: their 1K model)."""
    base = name[:-3] if name.endswith("-4k") else name
    return base if base in NOMINAL_PARAMS else None


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
