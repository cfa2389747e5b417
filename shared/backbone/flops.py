"""Analytic cost model of a backbone config: parameter count, forward FLOPs for an input size,
and a memory estimate; plus ``model_table()`` for ``python -m pretrain models``.

FLOPs count multiply-adds as 2 FLOPs for every matrix product (patch embedding, linear layers,
attention q.k and a.v, pooling) on the tokens actually computed (padding included); element-wise
work (norms, RoPE, softmax, SwiGLU gate) is left out. tests/backbone checks the count against
``torch.utils.flop_counter.FlopCounterMode`` on real forward passes.
"""
from __future__ import annotations

import math

from .config import NOMINAL_PARAMS, SEED_FLOPS, BackboneConfig, get_config, list_configs, seed_row


def count_params(cfg: BackboneConfig) -> int:
    """Exact parameter count of ``Backbone(cfg)`` without building it."""
    d, f, hd, b = cfg.embed_dim, cfg.ffn_dim, cfg.head_dim, int(cfg.bias)
    n = cfg.in_chans * cfg.patch_size ** 2 * d + d + d + cfg.num_registers * d + d   # embed, cls, regs, norm
    for i in range(cfg.depth):
        qkv_out = (cfg.num_heads + 2 * cfg.layer_kv_heads(i)) * hd
        n += 2 * d                                              # norm1, norm2
        n += d * qkv_out + b * qkv_out + d * d + b * d          # qkv, proj
        n += 2 * hd if cfg.qk_norm else 0
        n += 2 * (d * f + b * f) + f * d + b * d               # SwiGLU
        n += (1 + int(cfg.layerscale_mlp)) * d if cfg.layerscale_init else 0
    if cfg.effective_stride > 1:
        n += d + 4 * d * d + 4 * b * d                          # pool: norm, q, kv, proj
    return n


def _grid(cfg: BackboneConfig, height: int, width: int):
    p, s = cfg.patch_size, cfg.effective_stride
    gh, gw = math.ceil(height / p), math.ceil(width / p)
    ch, cw = math.ceil(gh / s), math.ceil(gw / s)
    if cfg.effective_window_layers:
        wh, ww = min(cfg.window_size, ch * s), min(cfg.window_size, cw * s)
    else:
        wh, ww = ch * s, cw * s
    hp, wp = math.ceil(ch * s / wh) * wh, math.ceil(cw * s / ww) * ww
    return gh, gw, ch, cw, hp, wp, wh, ww


def count_flops(cfg: BackboneConfig | str, height: int | None = None, width: int | None = None,
                batch: int = 1, attention: bool = True) -> int:
    """Forward FLOPs of one full (``keep=None``) pass at ``height x width`` (default: config input).

    ``attention=False`` leaves out the attention products (q.k, a.v, pooling weights): what is left
    is twice the multiply-adds of the patch embedding and the linear layers."""
    cfg = get_config(cfg) if isinstance(cfg, str) else cfg
    height, width = height or cfg.default_input[0], width or cfg.default_input[1]
    d, f, hd, s_tok = cfg.embed_dim, cfg.ffn_dim, cfg.head_dim, 1 + cfg.num_registers
    gh, gw, ch, cw, hp, wp, wh, ww = _grid(cfg, height, width)
    st = cfg.effective_stride
    total = 2 * gh * gw * cfg.in_chans * cfg.patch_size ** 2 * d
    k = cfg.effective_window_layers
    m1, c = hp * wp, ch * cw
    for i in range(cfg.depth):
        n = s_tok + (m1 if i < k else c)
        qkv_out = (cfg.num_heads + 2 * cfg.layer_kv_heads(i)) * hd
        total += 2 * n * (d * qkv_out + d * d + 3 * d * f)
        if not attention:
            continue
        if i < k:
            t = wh * ww
            total += 4 * (m1 // t) * t * t * d + 4 * s_tok * n * d   # windows + specials (global)
        else:
            total += 4 * n * n * d
    if st > 1:
        g = c * st * st
        total += 2 * d * d + 2 * g * 2 * d * d + 2 * c * d * d + (4 * g * d if attention else 0)
    return total * batch


def memory_estimate(cfg: BackboneConfig | str, height: int | None = None, width: int | None = None,
                    batch: int = 1, act_bytes: int = 2) -> dict[str, float]:
    """Rough memory in GiB.

    ``inference``: bf16 weights + the largest live activations of one block (residual, normed input,
    SwiGLU intermediates; attention through memory-efficient kernels is O(tokens)).
    ``training``: fp32 weights, gradients and AdamW moments (16 B/param) + activations kept for
    backward, about ``10 * D + 4 * ffn`` values per token per block (norm in/out, qkv, q/k after
    RoPE, attention out, SwiGLU's four tensors), no activation checkpointing.
    """
    cfg = get_config(cfg) if isinstance(cfg, str) else cfg
    height, width = height or cfg.default_input[0], width or cfg.default_input[1]
    d, f = cfg.embed_dim, cfg.ffn_dim
    gh, gw, ch, cw, hp, wp, _, _ = _grid(cfg, height, width)
    s_tok, k = 1 + cfg.num_registers, cfg.effective_window_layers
    n1, n2 = s_tok + hp * wp, s_tok + ch * cw
    params = count_params(cfg)
    gib = 1024 ** 3
    peak_tokens = max(n1 if k else 0, n2)
    infer = 2 * params + batch * act_bytes * peak_tokens * (2 * d + 3 * f)
    per_tok_block = act_bytes * (10 * d + 4 * f)
    tokens_all = k * n1 + (cfg.depth - k) * n2
    train = 16 * params + batch * per_tok_block * tokens_all
    return {"weights_gib": 2 * params / gib, "inference_gib": infer / gib, "training_gib": train / gib}


FLOPS_CONVENTION = ("GFLOPs: full forward, 2 FLOPs per multiply-add (linear layers, patch embedding "
                    "and attention products), batch 1; linear TMACs: multiply-adds of the patch "
                    "embedding and linear layers only (~ params x tokens), the convention that comes "
                    "closest to the seed's FLOPs column (its own convention is not stated)")


def model_table(height: int = 1024, width: int = 768) -> list[dict]:
    """One row per named config: parameters (and the seed's), forward GFLOPs, linear-layer MACs (and
    the seed's FLOPs), attention scheme and memory (batch 1) at height x width."""
    rows = []
    for name in list_configs():
        cfg = get_config(name)
        mem = memory_estimate(cfg, height, width)
        seed = seed_row(name)
        # the seed's FLOPs are those of the plain 1K models at 1024x768
        at_seed_input = (height, width) == (1024, 768) and seed == name
        rows.append({"name": name, "params": count_params(cfg), "params_m": count_params(cfg) / 1e6,
                     "seed_params": NOMINAL_PARAMS.get(seed) if seed else None,
                     "attention": cfg.attention_scheme, "registers": cfg.num_registers,
                     "dim": cfg.embed_dim, "depth": cfg.depth, "heads": cfg.num_heads,
                     "kv_heads": cfg.kv_heads, "ffn": cfg.ffn_dim,
                     "gflops": count_flops(cfg, height, width) / 1e9,
                     "linear_tmacs": count_flops(cfg, height, width, attention=False) / 2e12,
                     "seed_tflops": SEED_FLOPS[seed] / 1e12 if seed and at_seed_input else None,
                     "input": f"{height}x{width}",
                     "inference_gib": mem["inference_gib"], "training_gib": mem["training_gib"]})
    return rows


def format_model_table(height: int = 1024, width: int = 768) -> str:
    head = (f"{'name':<17} {'params':>8} {'seed':>5} {'dim':>5} {'depth':>5} {'heads':>5} {'kv':>3} "
            f"{'regs':>4} {'GFLOPs':>9} {'lin TMACs':>9} {'seed T':>6} {'infer GiB':>9} "
            f"{'train GiB':>9}  attention")
    lines = [f"backbones at {height}x{width} (H x W), batch 1; memory: bf16 inference, "
             "AdamW training per image (estimates)", FLOPS_CONVENTION + "; seed: the seed's table "
             "(-4k rows: their 1K model's parameters)", head, "-" * len(head)]
    for r in model_table(height, width):
        p = r["params"]
        ps = f"{p / 1e9:.3f}B" if p >= 1e8 else f"{p / 1e6:.2f}M"
        sp = f"{r['seed_params'] / 1e9:.1f}B" if r["seed_params"] else "-"
        st = f"{r['seed_tflops']:.2f}" if r["seed_tflops"] else "-"
        lines.append(f"{r['name']:<17} {ps:>8} {sp:>5} {r['dim']:>5} {r['depth']:>5} {r['heads']:>5} "
                     f"{r['kv_heads']:>3} {r['registers']:>4} {r['gflops']:>9.1f} "
                     f"{r['linear_tmacs']:>9.3f} {st:>6} {r['inference_gib']:>9.2f} "
                     f"{r['training_gib']:>9.2f}  {r['attention']}")
    return "\n".join(lines)


def print_model_table(height: int = 1024, width: int = 768) -> None:
    print(format_model_table(height, width))
