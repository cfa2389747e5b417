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
                                                                       "window_size": 8}])
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
    # hierarchy saves compute at 1024x768
    flat = get_config("sapiens2-0.4b", hierarchical=False)
    assert count_flops("sapiens2-0.4b", 1024, 768) < 0.5 * count_flops(flat, 1024, 768)


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
