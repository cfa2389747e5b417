"""Load released Sapiens2 backbone weights: key converter from the released layout to ours (strict).

The released layout is that of ``Sapiens2`` in facebookresearch/sapiens2,
``sapiens/backbones/standalone/sapiens2.py`` (read at commit b8177e26d755df2d9e40d7bcce62327d7be00e00;
the weights themselves cannot be downloaded here, so the tests use a randomly initialised model
saved in that layout). Its state dict, for a 1K model::

    patch_embed.projection.{weight,bias}     Conv2d 16x16          -> patch_embed.{weight,bias}
    cls_token [1,1,D], storage_tokens [1,R,D]                      -> cls_token, registers
    rope_embed.periods [head_dim/4]          RoPE periods (buffer) -> checked against rope_theta
    blocks.i.ln1.weight, blocks.i.ln2.weight RMSNorm               -> blocks.i.norm1 / norm2
    blocks.i.attn.{wq,wk,wv}.{weight,bias}   separate q, k, v      -> blocks.i.attn.qkv (q, k, v rows)
    blocks.i.attn.{q_norm,k_norm}.weight     QK-norm               -> blocks.i.attn.q_norm / k_norm
    blocks.i.attn.proj.{weight,bias}                               -> blocks.i.attn.proj
    blocks.i.attn.gamma.weight               LayerScale (attention)-> blocks.i.ls1.gamma
    blocks.i.ffn.w12.{weight,bias}           SwiGLU [gate; up]     -> blocks.i.mlp.fc1_g / fc1_x
    blocks.i.ffn.w3.{weight,bias}                                  -> blocks.i.mlp.fc2
    ln1.weight                               final RMSNorm         -> norm.weight

RoPE: the released code rotates channel ``j`` with ``j + head_dim/2`` ("rotate half"); ours rotates
the pairs ``(2i, 2i+1)``. Both give channel pair ``i`` (``i < head_dim/4``: the row axis, then the
column axis) the angle ``2 pi coord / period_i`` with coordinates normalised to [-1, 1], so the q and
k rows (and the QK-norm weights) are permuted per head: our ``2i`` <- released ``i``, our ``2i+1``
<- released ``i + head_dim/2``. The permutation leaves every attention score unchanged.

The released 4K models carry ``tokenizer.*`` weights (extra windowed layers with a local absolute
position embedding and one learned CLS per window); our ``-4k`` windowed stage is a different module
(RoPE, CLS-guided pooling), so those checkpoints are refused with the keys named.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

from .config import BackboneConfig, get_config, list_configs
from .io import CheckpointMismatch, load_state_strict
from .layers import rope_frequencies
from .model import Backbone

SOURCE = ("facebookresearch/sapiens2 sapiens/backbones/standalone/sapiens2.py "
          "@ b8177e26d755df2d9e40d7bcce62327d7be00e00")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def rope_permutation(head_dim: int) -> torch.Tensor:
    """Index ``p`` with ``ours[k] = released[p[k]]`` for the channels of one head."""
    half = head_dim // 2
    p = torch.empty(head_dim, dtype=torch.long)
    p[0::2] = torch.arange(half)
    p[1::2] = torch.arange(half) + half
    return p


def _permute_heads(t: torch.Tensor, heads: int, perm: torch.Tensor) -> torch.Tensor:
    """Permute the per-head channel rows of a projection weight ``[heads*hd, ...]`` or bias."""
    hd = perm.numel()
    return t.reshape(heads, hd, *t.shape[1:]).index_select(1, perm).reshape(heads * hd, *t.shape[1:])


def unwrap_released(obj: Mapping, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The backbone tensors of a released checkpoint object: unwraps ``state_dict`` / ``model``
    entries and, in a task checkpoint, keeps the ``backbone.`` sub-tree (prefix removed)."""
    state = obj
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointMismatch(f"{source}: entries that are not tensors: {bad}")
    return dict(state)


def infer_config(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> BackboneConfig:
    """The named 1K config whose width and depth match a released state dict."""
    tok = [k for k in state if k.startswith("tokenizer.")]
    if tok:
        raise CheckpointMismatch(
            f"{source}: a released 4K checkpoint ({len(tok)} tokenizer keys, e.g. {tok[:3]}): its "
            "windowed tokenizer is not the -4k configs' windowed stage; only 1K backbones convert")
    if "cls_token" not in state:
        raise CheckpointMismatch(f"{source}: no 'cls_token' key: not a Sapiens2 backbone state dict "
                                 f"(first keys: {sorted(state)[:5]})")
    dim = state["cls_token"].shape[-1]
    depth = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK.match(k))), default=-1)
    for name in list_configs():
        cfg = get_config(name)
        if cfg.embed_dim == dim and cfg.depth == depth and not cfg.hierarchical:
            return cfg
    raise CheckpointMismatch(f"{source}: width {dim} and depth {depth} match no named 1K config "
                             f"(allowed: {', '.join(n for n in list_configs() if not n.endswith('-4k'))})")


def from_released(state: Mapping[str, torch.Tensor], cfg: BackboneConfig,
                  source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Our state dict from a released-layout one. Every released key must be used and every key
    of ours produced: otherwise ``CheckpointMismatch`` names each missing and unexpected key."""
    hd = cfg.head_dim
    perm = rope_permutation(hd)
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []

    def take(key: str) -> torch.Tensor | None:
        if key not in state:
            missing.append(key)
            return None
        used.add(key)
        return state[key]

    def put(ours: str, released: str) -> None:
        t = take(released)
        if t is not None:
            out[ours] = t

    put("patch_embed.weight", "patch_embed.projection.weight")
    put("patch_embed.bias", "patch_embed.projection.bias")
    put("cls_token", "cls_token")
    if cfg.num_registers:
        put("registers", "storage_tokens")
    put("norm.weight", "ln1.weight")
    periods = take("rope_embed.periods")
    if periods is not None:
        ours = 1.0 / rope_frequencies(hd, cfg.rope_theta)
        if periods.shape != ours.shape or not torch.allclose(periods.float(), ours, rtol=1e-2):
            raise CheckpointMismatch(f"{source}: 'rope_embed.periods' {periods.float()[:4].tolist()}... "
                                     f"differ from rope_theta={cfg.rope_theta} periods "
                                     f"{ours[:4].tolist()}...")
    for i in range(cfg.depth):
        r, o = f"blocks.{i}.", f"blocks.{i}."
        put(o + "norm1.weight", r + "ln1.weight")
        put(o + "norm2.weight", r + "ln2.weight")
        kvh = cfg.layer_kv_heads(i)
        for part in ("weight",) + (("bias",) if cfg.bias else ()):
            q, k, v = (take(f"{r}attn.w{n}.{part}") for n in "qkv")
            if q is not None and k is not None and v is not None:
                out[f"{o}attn.qkv.{part}"] = torch.cat([_permute_heads(q, cfg.num_heads, perm),
                                                        _permute_heads(k, kvh, perm), v], dim=0)
            put(f"{o}attn.proj.{part}", f"{r}attn.proj.{part}")
            w12 = take(f"{r}ffn.w12.{part}")
            if w12 is not None:
                out[f"{o}mlp.fc1_g.{part}"], out[f"{o}mlp.fc1_x.{part}"] = w12.chunk(2, dim=0)
            put(f"{o}mlp.fc2.{part}", f"{r}ffn.w3.{part}")
        if cfg.qk_norm:
            for n in ("q_norm", "k_norm"):
                t = take(f"{r}attn.{n}.weight")
                if t is not None:
                    out[f"{o}attn.{n}.weight"] = t.index_select(0, perm)
        if cfg.layerscale_init:
            put(o + "ls1.gamma", r + "attn.gamma.weight")
            if cfg.layerscale_mlp:
                put(o + "ls2.gamma", r + "ffn.gamma2.weight")
    unexpected = sorted(set(state) - used)
    if missing or unexpected:
        raise CheckpointMismatch(f"{source}: released Sapiens2 layout ({SOURCE}) does not match "
                                 f"config '{cfg.name}': {len(missing)} missing keys {missing}; "
                                 f"{len(unexpected)} unexpected keys {unexpected}")
    return out


def to_released(model: Backbone) -> dict[str, torch.Tensor]:
    """Our model's weights in the released layout (inverse of ``from_released``)."""
    cfg = model.config
    sd = model.state_dict()
    inv = torch.argsort(rope_permutation(cfg.head_dim))
    out = {"patch_embed.projection.weight": sd["patch_embed.weight"],
           "patch_embed.projection.bias": sd["patch_embed.bias"],
           "cls_token": sd["cls_token"], "ln1.weight": sd["norm.weight"],
           "rope_embed.periods": 1.0 / rope_frequencies(cfg.head_dim, cfg.rope_theta)}
    if cfg.num_registers:
        out["storage_tokens"] = sd["registers"]
    hd = cfg.head_dim
    for i in range(cfg.depth):
        o = f"blocks.{i}."
        out[o + "ln1.weight"], out[o + "ln2.weight"] = sd[o + "norm1.weight"], sd[o + "norm2.weight"]
        kvh = cfg.layer_kv_heads(i)
        for part in ("weight",) + (("bias",) if cfg.bias else ()):
            q, k, v = sd[f"{o}attn.qkv.{part}"].split([cfg.num_heads * hd, kvh * hd, kvh * hd])
            out[f"{o}attn.wq.{part}"] = _permute_heads(q, cfg.num_heads, inv)
            out[f"{o}attn.wk.{part}"] = _permute_heads(k, kvh, inv)
            out[f"{o}attn.wv.{part}"] = v
            out[f"{o}attn.proj.{part}"] = sd[f"{o}attn.proj.{part}"]
            out[f"{o}ffn.w12.{part}"] = torch.cat([sd[f"{o}mlp.fc1_g.{part}"], sd[f"{o}mlp.fc1_x.{part}"]])
            out[f"{o}ffn.w3.{part}"] = sd[f"{o}mlp.fc2.{part}"]
        if cfg.qk_norm:
            for n in ("q_norm", "k_norm"):
                out[f"{o}attn.{n}.weight"] = sd[f"{o}attn.{n}.weight"].index_select(0, inv)
        if cfg.layerscale_init:
            out[o + "attn.gamma.weight"] = sd[o + "ls1.gamma"]
            if cfg.layerscale_mlp:
                out[o + "ffn.gamma2.weight"] = sd[o + "ls2.gamma"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def read_released(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a released checkpoint file (``.safetensors``, or ``.pth``/``.pt`` read with
    ``torch.load(weights_only=True)``), unwrapped by ``unwrap_released``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"released checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        obj = load_file(str(path))
    else:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping):
        raise CheckpointMismatch(f"{path}: expected a state dict, got {type(obj).__name__}")
    return unwrap_released(obj, str(path))


def load_released(path: str | Path, cfg: BackboneConfig | str | None = None) -> Backbone:
    """A ``Backbone`` with the weights of a released Sapiens2 checkpoint (config inferred from the
    tensors' shapes unless given), loaded strictly."""
    state = read_released(path)
    cfg = get_config(cfg) if isinstance(cfg, str) else cfg or infer_config(state, str(path))
    model = Backbone(cfg)
    load_state_strict(model, from_released(state, cfg, str(path)), str(path), f"backbone '{cfg.name}'")
    return model


def convert_released(src: str | Path, out: str | Path, cfg: BackboneConfig | str | None = None) -> Path:
    """Convert a released checkpoint to our ``backbone.safetensors`` (what pretrain and heads load)."""
    from .io import save_backbone

    model = load_released(src, cfg)
    return save_backbone(model, out, extra={"converted_from": str(src), "released_layout": SOURCE})


__all__ = ["SOURCE", "convert_released", "from_released", "infer_config", "load_released",
           "read_released", "rope_permutation", "to_released", "unwrap_released"]
