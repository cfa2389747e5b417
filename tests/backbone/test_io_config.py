"""Named configs, parameter counts, FLOPs counter, save/load round trip."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from humans.shared.backbone import (build_backbone, count_flops, get_config, list_configs, load_backbone,
                             model_table, save_backbone)
from humans.shared.backbone.config import NOMINAL_PARAMS
from humans.shared.backbone.flops import count_params, format_model_table
from humans.shared.config import ConfigError


def test_named_configs_match_sapiens2_table():
    assert list_configs()[0] == "sapiens2-tiny"
    for name, nominal in NOMINAL_PARAMS.items():
        with torch.device("meta"):
            m = build_backbone(name)
        n = m.num_params()
        assert abs(n / nominal - 1) < 0.05, (name, n)
        assert n == count_params(m.config)
    big = get_config("sapiens2-5b")
    assert (big.embed_dim, big.depth, big.num_heads) == (2432, 56, 32)


def test_config_errors_name_key_and_allowed():
    with pytest.raises(ConfigError, match="unknown backbone 'vit-h'.*sapiens2-tiny"):
        get_config("vit-h")
    with pytest.raises(ConfigError, match="window_size.*multiple of pool_stride"):
        get_config("sapiens2-tiny", window_size=6, pool_stride=4)
    with pytest.raises(ConfigError, match="kv_heads"):
        get_config("sapiens2-tiny", kv_heads=3)
    with pytest.raises(ConfigError, match="unknown key"):
        get_config("sapiens2-tiny", windw=3)


@pytest.mark.parametrize("overrides", [{}, {"hierarchical": False}, {"num_registers": 3, "pool_stride": 4,
                                                                       "window_size": 8},
                                       # the -4k layout: window = stride = 4, released GQA/LayerScale/RoPE
                                       {"num_registers": 8, "pool_stride": 4, "window_size": 4,
                                        "gqa_layout": "inner", "mha_edge": 1, "layerscale_init": 1e-4,
                                        "layerscale_mlp": False, "rope_coords": "normalized"}])
@pytest.mark.parametrize("hw", [(224, 224), (160, 112)])
def test_flops_counter_matches_torch(hw, overrides):
    m = build_backbone("sapiens2-tiny", **overrides).eval()
    with FlopCounterMode(display=False) as fc, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        m(torch.randn(1, 3, *hw))
    assert fc.get_total_flops() == count_flops(m.config, *hw)


def test_model_table():
    rows = model_table()
    assert [r["name"] for r in rows] == list_configs()
    r = {r["name"]: r for r in rows}
    assert r["sapiens2-0.4b"]["input"] == "1024x768"
    assert r["sapiens2-tiny"]["gflops"] < r["sapiens2-0.4b"]["gflops"] < r["sapiens2-5b"]["gflops"]
    assert 0 < r["sapiens2-0.4b"]["inference_gib"] < r["sapiens2-0.4b"]["training_gib"]
    assert "sapiens2-5b" in format_model_table()
    # 1K configs are plain global ViTs, -4k configs hierarchical; the hierarchy saves compute at 4K
    assert r["sapiens2-0.4b"]["attention"] == "global"
    assert r["sapiens2-0.4b-4k"]["attention"].startswith("2 windowed (4x4) -> pool /4")
    assert count_flops("sapiens2-0.4b-4k", 2160, 3840) < 0.05 * count_flops("sapiens2-0.4b", 2160, 3840)


def test_released_family_layout_and_seed_columns():
    """Registers, GQA placement and LayerScale as the released backbones; the linear-layer MACs at
    1024x768 (params x tokens) within 10 % of the seed's FLOPs column, params within 5 %."""
    r = {row["name"]: row for row in model_table()}
    for name in NOMINAL_PARAMS:
        cfg = get_config(name)
        assert not cfg.hierarchical and cfg.num_registers == 8 and cfg.rope_coords == "normalized"
        assert cfg.gqa_layers() == range(8, cfg.depth - 8) and cfg.kv_heads == cfg.num_heads // 2
        assert abs(r[name]["params"] / r[name]["seed_params"] - 1) < 0.05
        assert abs(r[name]["linear_tmacs"] / r[name]["seed_tflops"] - 1) < 0.10, name
        k4 = get_config(name + "-4k")
        assert k4.hierarchical and (k4.window_size, k4.pool_stride) == (4, 4)
        assert k4.depth - k4.window_layers == cfg.depth                    # same global stage
        assert len(k4.gqa_layers()) == len(cfg.gqa_layers()) and k4.gqa_layers()[0] == k4.window_layers + 8
    assert [get_config(n + "-4k").window_layers for n in NOMINAL_PARAMS] == [2, 3, 4, 6]
    assert r["sapiens2-0.4b-4k"]["seed_params"] == 0.4e9 and r["sapiens2-0.4b-4k"]["seed_tflops"] is None
    # the seed's FLOPs are at 1024x768: not shown beside other input sizes
    assert all(row["seed_tflops"] is None for row in model_table(2160, 3840))


def test_save_load_round_trip_bit_exact(tmp_path):
    m = build_backbone("sapiens2-tiny", num_registers=2, layerscale_init=1e-2).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = save_backbone(m, tmp_path / "sub" / "bb.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"])["num_registers"] == 2
    m2 = load_backbone(path)
    assert m2.config == m.config
    for (k1, v1), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        assert torch.equal(m(x).tokens, m2.eval()(x).tokens)
    assert not list(tmp_path.glob("sub/.*tmp"))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_backbone(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a backbone checkpoint"):
        load_backbone(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a file at all")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_backbone(junk)
