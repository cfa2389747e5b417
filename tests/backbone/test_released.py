"""Released Sapiens2 weights: a randomly initialised backbone saved in the released layout
(facebookresearch/sapiens2 ``sapiens/backbones/standalone/sapiens2.py``) loads strictly and gives
the same outputs as a plain-torch re-statement of the released forward pass; mismatches are named.

The reference forward below is written from the released code's definitions (separate wq/wk/wv,
"rotate half" RoPE over coordinates normalised to [-1, 1], storage tokens, SwiGLU w12/w3,
attention-only LayerScale, final RMSNorm "ln1"), not from our modules.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from humans.shared.backbone import CheckpointMismatch, build_backbone, get_config, load_backbone, load_released
from humans.shared.backbone.released import convert_released, from_released, to_released

# the 0.4b layout at reduced width and depth (GQA on layers 1..2 with mha_edge 1)
SMALL = dict(embed_dim=64, depth=4, num_heads=4, kv_heads=2, ffn_dim=96, mha_edge=1, num_registers=3)


def released_forward(sd: dict, n_heads: int, x: torch.Tensor) -> torch.Tensor:
    """All tokens [B, 1+R+N, D] after the final norm, computed from a released-layout state dict."""
    rms = lambda u, w: F.rms_norm(u, (u.shape[-1],), w, 1e-6)  # noqa: E731
    p = F.conv2d(x, sd["patch_embed.projection.weight"], sd["patch_embed.projection.bias"], stride=16)
    b, d, gh, gw = p.shape
    hd = d // n_heads
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), sd["storage_tokens"].expand(b, -1, -1),
                   p.flatten(2).transpose(1, 2)], dim=1)
    s = t.shape[1] - gh * gw
    ch, cw = (torch.arange(gh) + 0.5) / gh, (torch.arange(gw) + 0.5) / gw
    coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), dim=-1).flatten(0, 1) * 2 - 1
    ang = (2 * math.pi * coords[:, :, None] / sd["rope_embed.periods"][None, None, :]).flatten(1, 2).tile(2)
    sin, cos = ang.sin(), ang.cos()

    def rope(u):
        r = u[:, :, s:]
        a, c = r.chunk(2, dim=-1)
        return torch.cat([u[:, :, :s], r * cos + torch.cat([-c, a], dim=-1) * sin], dim=2)

    n = t.shape[1]
    i = 0
    while f"blocks.{i}.ln1.weight" in sd:
        pre = f"blocks.{i}."
        h = rms(t, sd[pre + "ln1.weight"])
        q = F.linear(h, sd[pre + "attn.wq.weight"], sd[pre + "attn.wq.bias"]).view(b, n, -1, hd).transpose(1, 2)
        k = F.linear(h, sd[pre + "attn.wk.weight"], sd[pre + "attn.wk.bias"]).view(b, n, -1, hd).transpose(1, 2)
        v = F.linear(h, sd[pre + "attn.wv.weight"], sd[pre + "attn.wv.bias"]).view(b, n, -1, hd).transpose(1, 2)
        q, k = rms(q, sd[pre + "attn.q_norm.weight"]), rms(k, sd[pre + "attn.k_norm.weight"])
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(rope(q), rope(k), v).transpose(1, 2).reshape(b, n, d)
        t = t + F.linear(a, sd[pre + "attn.proj.weight"], sd[pre + "attn.proj.bias"]) * sd[pre + "attn.gamma.weight"]
        g, u = F.linear(rms(t, sd[pre + "ln2.weight"]), sd[pre + "ffn.w12.weight"], sd[pre + "ffn.w12.bias"]).chunk(2, -1)
        t = t + F.linear(F.silu(g) * u, sd[pre + "ffn.w3.weight"], sd[pre + "ffn.w3.bias"])
        i += 1
    return rms(t, sd["ln1.weight"])


def random_released(cfg) -> dict[str, torch.Tensor]:
    """Random tensors with the released layout's keys and shapes (periods as the released init)."""
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        layout = to_released(build_backbone("sapiens2-0.4b", **SMALL))
    norms = ("ln1.weight", "ln2.weight", "norm.weight")
    out = {k: torch.randn(v.shape, generator=g) * (0.5 if v.dim() == 1 else 0.1) + float(k.endswith(norms))
           for k, v in layout.items() if k != "rope_embed.periods"}
    hd = cfg.head_dim
    out["rope_embed.periods"] = cfg.rope_theta ** (2 * torch.arange(hd // 4, dtype=torch.float32) / (hd // 2))
    return out


def test_released_layout_loads_strictly_and_matches_released_forward(tmp_path):
    cfg = get_config("sapiens2-0.4b", **SMALL)
    sd = random_released(cfg)
    assert cfg.gqa_layers() == range(1, 3) and sd["blocks.1.attn.wk.weight"].shape[0] == 2 * cfg.head_dim
    # a task checkpoint as mmengine writes it: state_dict with the backbone under "backbone."
    path = tmp_path / "released.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in sd.items()} | {"decode_head.w": torch.ones(1)}}, path)
    model = load_released(path, cfg).eval()
    x = torch.randn(2, 3, 80, 48)
    with torch.no_grad():
        ref = released_forward(sd, cfg.num_heads, x)
        out = model(x)
    s = 1 + cfg.num_registers
    assert out.grid == (5, 3)
    torch.testing.assert_close(out.cls, ref[:, 0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.registers, ref[:, 1:s], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.tokens, ref[:, s:], atol=2e-5, rtol=1e-4)
    # and back: the converter is a bijection on the layout
    back = to_released(model)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd if k != "rope_embed.periods")
    torch.testing.assert_close(back["rope_embed.periods"], sd["rope_embed.periods"])
    # converted to our safetensors file, which pretrain/heads load strictly
    saved = convert_released(path, tmp_path / "bb.safetensors", cfg)
    with torch.no_grad():
        assert torch.equal(load_backbone(saved).eval()(x).tokens, out.tokens)


def test_released_mismatch_names_every_key_and_stops(tmp_path):
    cfg = get_config("sapiens2-0.4b", **SMALL)
    sd = random_released(cfg)
    del sd["blocks.2.attn.wk.bias"], sd["storage_tokens"]
    sd["blocks.9.attn.wq.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch) as e:
        from_released(sd, cfg, "r.pth")
    msg = str(e.value)
    for key in ("blocks.2.attn.wk.bias", "storage_tokens", "blocks.9.attn.wq.weight"):
        assert key in msg
    assert "2 missing keys" in msg and "1 unexpected keys" in msg
    # a released 4K checkpoint (tokenizer weights) is refused by name, as are wrong RoPE periods
    sd4 = random_released(cfg) | {"tokenizer.w_cls": torch.zeros(1, 1, 64)}
    torch.save(sd4, tmp_path / "r4k.pth")
    with pytest.raises(CheckpointMismatch, match="tokenizer.w_cls"):
        load_released(tmp_path / "r4k.pth")
    bad = random_released(cfg)
    bad["rope_embed.periods"] = bad["rope_embed.periods"] * 2
    with pytest.raises(CheckpointMismatch, match="rope_embed.periods"):
        from_released(bad, cfg)


def test_released_config_inferred_from_shapes(tmp_path):
    """Width and depth pick the named 1K config (meta tensors: no memory for the 0.4b model)."""
    from humans.shared.backbone.released import infer_config
    with torch.device("meta"):
        sd = to_released(build_backbone("sapiens2-0.4b"))
    assert infer_config(sd).name == "sapiens2-0.4b"
    assert len([k for k in sd if k.endswith("attn.wq.weight")]) == 24 and sd["storage_tokens"].shape == (1, 8, 1024)
    with pytest.raises(CheckpointMismatch, match="no 'cls_token'"):
        infer_config({"foo": torch.zeros(1)})


def test_load_backbone_mismatch_names_keys(tmp_path):
    """Our own checkpoints: a file whose tensors do not match its config fails with every key named."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from humans.shared.backbone import save_backbone
    path = save_backbone(build_backbone("sapiens2-tiny"), tmp_path / "bb.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    state.pop("norm.weight")
    state["extra.bias"] = torch.zeros(3)
    state["cls_token"] = torch.zeros(1, 1, 7)
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(CheckpointMismatch) as e:
        load_backbone(tmp_path / "bad.safetensors")
    msg = str(e.value)
    assert "norm.weight" in msg and "extra.bias" in msg and "cls_token: checkpoint (1, 1, 7)" in msg
