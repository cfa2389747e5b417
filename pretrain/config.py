"""Typed training configuration (``TrainConfig``): every knob of a pretraining run, validated at load.

A run is configured by a YAML file (``--config``), command-line flags (which win over the file) or
both; the resolved config is written to ``RUN/config.yaml`` so a run can be resumed or repeated.
Errors name the key, the value and what is allowed (``shared.config.ConfigError``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from humans.shared.config import ConfigError, StrictModel, load_yaml, validate
from humans.shared.cli import set_dotted

Objective = Literal["mae", "cl", "mae+cl"]


class ViewsConfig(StrictModel):
    """Multi-crop views. Global views: geometric augmentation only (no colour); local views: both."""

    global_size: int = 224
    n_global: int = 2
    global_scale: tuple[float, float] = (0.32, 1.0)   # RandomResizedCrop area range
    local_size: int = 96
    n_local: int = 6
    local_scale: tuple[float, float] = (0.05, 0.32)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)      # aspect-ratio range of the crops
    hflip_p: float = 0.5
    # colour augmentation (local views only)
    color_jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.2
    # copy-detection edits (every view; off for pretraining, on for a curation embedder that must see a
    # re-posted copy as the same image): a small rotation cropped to its interior, and letterbox bars
    rotate_p: float = 0.0
    rotate_deg: float = 6.0                         # largest rotation, degrees either way
    letterbox_p: float = 0.0
    letterbox_frac: tuple[float, float] = (0.05, 0.15)  # each bar's share of the padded side

    @model_validator(mode="after")
    def _check(self) -> "ViewsConfig":
        for key in ("global_size", "local_size"):
            if getattr(self, key) < 16:
                raise ConfigError(f"views: key '{key}' has value {getattr(self, key)!r}: allowed >= 16")
        if self.n_global != 2:
            raise ConfigError(f"views: key 'n_global' has value {self.n_global!r}: allowed 2 "
                              "(the self-distillation pairs are defined over two global views)")
        if self.n_local < 0:
            raise ConfigError(f"views: key 'n_local' has value {self.n_local!r}: allowed >= 0")
        for key in ("global_scale", "local_scale", "ratio", "blur_sigma", "letterbox_frac"):
            lo, hi = getattr(self, key)
            if not 0 < lo <= hi:
                raise ConfigError(f"views: key '{key}' has value {(lo, hi)!r}: allowed 0 < low <= high")
        if self.letterbox_frac[1] >= 0.5:
            raise ConfigError(f"views: key 'letterbox_frac' has value {self.letterbox_frac!r}: allowed high < 0.5")
        if not 0.0 <= self.rotate_deg <= 45.0:
            raise ConfigError(f"views: key 'rotate_deg' has value {self.rotate_deg!r}: allowed 0..45")
        for key in ("hflip_p", "color_jitter_p", "grayscale_p", "blur_p", "solarize_p", "rotate_p", "letterbox_p"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"views: key '{key}' has value {getattr(self, key)!r}: allowed 0..1")
        return self


class MaeConfig(StrictModel):
    """Pixel MAE branch: cell masking, light decoder, masked-only MSE."""

    mask_ratio: float = 0.75
    decoder_dim: int | None = None     # None: min(256, backbone width), resolved by TrainConfig
    decoder_depth: int = 2
    decoder_heads: int = 8
    norm_pix_loss: bool = False        # per-patch normalised targets (MAE's norm_pix_loss)
    mask_local: bool = True            # also mask (and reconstruct) the local views (the seed masks
                                       # 75 % of the patches of every view)

    @model_validator(mode="after")
    def _check(self) -> "MaeConfig":
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"mae: key 'mask_ratio' has value {self.mask_ratio!r}: allowed 0 < r < 1")
        if self.decoder_dim is not None and self.decoder_dim % self.decoder_heads:
            raise ConfigError(f"mae: key 'decoder_dim' has value {self.decoder_dim!r}: allowed a "
                              f"multiple of decoder_heads={self.decoder_heads}")
        if self.decoder_depth < 0:
            raise ConfigError(f"mae: key 'decoder_depth' has value {self.decoder_depth!r}: allowed >= 0")
        return self


class ClConfig(StrictModel):
    """Self-distillation branch: projection head to K prototypes, EMA teacher, centring, sharpening."""

    out_dim: int = 65536               # K prototypes
    hidden_dim: int | None = None      # None: min(2048, 4 x backbone width), resolved by TrainConfig
    bottleneck_dim: int | None = None  # None: min(256, backbone width), resolved by TrainConfig
    n_layers: int = 3
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04  # linear ramp to teacher_temp over teacher_temp_warmup_steps
    teacher_temp_warmup_steps: int = 0
    center_momentum: float = 0.9
    centering: Literal["ema", "sinkhorn"] = "ema"   # teacher centring: EMA of the batch mean, or
                                       # Sinkhorn-Knopp (uniform prototype marginals, DINOv2)
    sinkhorn_iters: int = 3
    koleo_weight: float = 0.0          # > 0: KoLeo regulariser on the student's global-view CLS
    patch_weight: float = 0.0          # > 0: also distil patch tokens (off by default; see docs/pretrain.md):
                                       # the student's visible tokens of each global view (all of them
                                       # when not masked) match the teacher's patch-token prototype
                                       # distributions at the same positions of the same, unmasked view
    tau: float = 0.992                 # teacher EMA momentum
    tau_schedule: Literal["constant", "cosine"] = "constant"
    tau_end: float = 1.0               # final momentum of the cosine schedule

    @model_validator(mode="after")
    def _check(self) -> "ClConfig":
        for key in ("out_dim", "hidden_dim", "bottleneck_dim", "n_layers", "sinkhorn_iters"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"cl: key '{key}' has value {getattr(self, key)!r}: allowed >= 1")
        for key in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"cl: key '{key}' has value {getattr(self, key)!r}: allowed > 0")
        if self.koleo_weight < 0 or self.teacher_temp_warmup_steps < 0:
            raise ConfigError(f"cl: keys 'koleo_weight'/'teacher_temp_warmup_steps' have values "
                              f"{self.koleo_weight!r}/{self.teacher_temp_warmup_steps!r}: allowed >= 0")
        if self.patch_weight < 0:
            raise ConfigError(f"cl: key 'patch_weight' has value {self.patch_weight!r}: allowed >= 0")
        for key in ("tau", "tau_end", "center_momentum"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"cl: key '{key}' has value {getattr(self, key)!r}: allowed 0..1")
        return self


class OptimConfig(StrictModel):
    """AdamW with linear warm-up then cosine decay; gradient clipping by global norm."""

    lr: float = 1.5e-4                 # peak learning rate (per global batch, see scale_lr)
    min_lr: float = 1e-6
    scale_lr: bool = False             # multiply lr by global_batch / 256
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 1000
    grad_clip: float = 3.0             # 0 disables clipping

    @model_validator(mode="after")
    def _check(self) -> "OptimConfig":
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(f"optim: keys 'lr'/'min_lr' have values {self.lr!r}/{self.min_lr!r}: "
                              "allowed 0 <= min_lr <= lr, lr > 0")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("optim: 'warmup_steps', 'grad_clip' and 'weight_decay' must be >= 0 "
                              f"(got {self.warmup_steps!r}, {self.grad_clip!r}, {self.weight_decay!r})")
        return self


class DataConfig(StrictModel):
    """Streaming shard input."""

    shards: str = ""                   # brace pattern, glob, run directory, or comma-separated list
    batch_size: int = 64               # per rank
    num_workers: int = 4               # decoding processes per rank (0: decode in the main process)
    shuffle_buffer: int = 2000         # samples held for shuffling, per worker
    shuffle_initial: int = 500
    prefetch_factor: int = 2

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        for key in ("batch_size", "shuffle_buffer", "shuffle_initial", "prefetch_factor"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data: key '{key}' has value {getattr(self, key)!r}: allowed >= 1")
        if self.num_workers < 0:
            raise ConfigError(f"data: key 'num_workers' has value {self.num_workers!r}: allowed >= 0")
        return self


class TrainConfig(StrictModel):
    """A whole pretraining run."""

    model: str = "sapiens2-tiny"
    model_overrides: dict[str, Any] = Field(default_factory=dict)  # BackboneConfig fields
    objective: Objective = "mae+cl"
    lam: float = 1.0                   # total loss = MAE + lam * CL
    steps: int = 100_000
    seed: int = 0
    init: str = ""                     # warm start: a run/checkpoint or backbone .safetensors (see warm_start.py)
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    mae: MaeConfig = Field(default_factory=MaeConfig)
    cl: ClConfig = Field(default_factory=ClConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    precision: Literal["auto", "bf16", "fp32"] = "auto"   # auto: bf16 autocast on CUDA, fp32 on CPU
    grad_checkpointing: bool = False
    distributed: Literal["ddp", "fsdp"] = "ddp"           # strategy when WORLD_SIZE > 1
    log_every: int = 10
    ckpt_every: int = 1000
    keep_ckpts: int = 3                # most recent checkpoints kept (0 keeps all)
    ckpt_async: bool = True            # FSDP sharded saves written in the background
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0                   # torch intra-op threads on CPU (0: leave torch's default)

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        for key in ("steps", "log_every", "ckpt_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key '{key}' has value {getattr(self, key)!r}: allowed >= 1")
        if self.lam < 0:
            raise ConfigError(f"key 'lam' has value {self.lam!r}: allowed >= 0")
        if self.keep_ckpts < 0:
            raise ConfigError(f"key 'keep_ckpts' has value {self.keep_ckpts!r}: allowed >= 0")
        self._size_heads()
        return self

    def _size_heads(self) -> None:
        """Fill the head widths left unset from the backbone's width.

        Fixed ViT-L widths (a 2048-wide projection MLP, a 256-wide decoder) on a 64-wide backbone made
        98.9% of a sapiens2-tiny checkpoint pretraining-only heads, their EMA copy and Adam moments
        (112.7 MB for 0.32M backbone parameters); sized to the backbone they stay a small multiple of it.
        The resolved values are written to RUN/config.yaml, so a resumed run rebuilds the same shapes.
        """
        if None not in (self.cl.hidden_dim, self.cl.bottleneck_dim, self.mae.decoder_dim):
            return
        from humans.shared.backbone import get_config

        width = get_config(self.model, **self.model_overrides).embed_dim
        if self.cl.hidden_dim is None:
            self.cl.hidden_dim = min(2048, 4 * width)
        if self.cl.bottleneck_dim is None:
            self.cl.bottleneck_dim = min(256, width)
        if self.mae.decoder_dim is None:
            self.mae.decoder_dim = min(256, width)
            if self.mae.decoder_dim % self.mae.decoder_heads:
                raise ConfigError(f"mae: key 'decoder_heads' has value {self.mae.decoder_heads!r}: allowed a "
                                  f"divisor of the decoder width {self.mae.decoder_dim} (set mae.decoder_dim)")

    @property
    def use_mae(self) -> bool:
        return "mae" in self.objective

    @property
    def use_cl(self) -> bool:
        return "cl" in self.objective

    @property
    def n_local(self) -> int:
        """Local views actually produced: none for the MAE-only objective (nothing would use them)."""
        return self.views.n_local if self.use_cl else 0


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read ``path`` (YAML, optional) and apply dotted ``overrides`` (``{"optim.lr": 1e-3}``)."""
    data: dict[str, Any] = dict(load_yaml(path)) if path else {}
    source = str(path) if path else "config"
    set_dotted(data, overrides or {}, source)
    return validate(TrainConfig, data, source=source)


def dump_config(cfg: TrainConfig) -> str:
    """The config as YAML (tuples written as lists), readable back by ``load_train_config``."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
