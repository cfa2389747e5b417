"""Forward contract of the backbone: shapes, layers, keep path, window isolation, 4K input."""
import pytest
import torch

from humans.shared.backbone import build_backbone


@pytest.mark.parametrize("hw", [(224, 224), (96, 96), (200, 150), (64, 176)])
@pytest.mark.parametrize("overrides", [{}, {"hierarchical": False}, {"pool_stride": 4, "window_size": 8},
                                       {"num_registers": 2, "layerscale_init": 1e-3}])
def test_shapes(hw, overrides):
    m = build_backbone("sapiens2-tiny", **overrides).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        out = m(x, return_layers=[0, 1, -1])
    c = m.cell_size
    assert c == 16 * m.pool_stride
    grid = (-(-hw[0] // c), -(-hw[1] // c))
    assert out.grid == grid
    assert out.cls.shape == (2, 64) and out.tokens.shape == (2, grid[0] * grid[1], 64)
    assert set(out.layers) == {0, 1, -1}
    patches = (-(-hw[0] // 16), -(-hw[1] // 16))
    first = patches if m.window_layers >= 1 else grid
    assert out.layers[0].shape == (2, 64, *first)
    assert out.layers[-1].shape == (2, 64, *grid)
    # the last layer map is the final tokens laid out on the grid
    assert torch.allclose(out.layers[-1].flatten(2).transpose(1, 2), out.tokens)
    assert torch.isfinite(out.tokens).all()
    if overrides.get("num_registers"):
        assert out.registers.shape == (2, 2, 64)
    assert m.pool_stride == (1 if overrides.get("hierarchical") is False else overrides.get("pool_stride", 2))


def test_forward_features_and_bad_layers():
    m = build_backbone("sapiens2-tiny").eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        feats = m.forward_features(x, [3, 1])
    assert [f.shape for f in feats] == [(1, 64, 3, 4), (1, 64, 6, 8)]
    with pytest.raises(IndexError, match="out of range"):
        m(x, return_layers=[4])
    with pytest.raises(ValueError, match="images"):
        m(torch.randn(3, 96, 96))


@pytest.mark.parametrize("overrides", [{}, {"hierarchical": False}, {"num_registers": 2},
                                       {"pool_stride": 4, "window_size": 8}])
@pytest.mark.parametrize("hw", [(224, 224), (208, 144)])
def test_keep_all_equals_full(hw, overrides):
    m = build_backbone("sapiens2-tiny", **overrides).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        full = m(x)
        n = full.grid[0] * full.grid[1]
        same = m(x, keep=torch.arange(n).expand(2, n))
        perm = torch.stack([torch.randperm(n) for _ in range(2)])
        shuffled = m(x, keep=perm)
    assert torch.allclose(same.tokens, full.tokens, atol=1e-5)
    assert torch.allclose(same.cls, full.cls, atol=1e-5)
    expected = torch.stack([full.tokens[i, perm[i]] for i in range(2)])
    assert torch.allclose(shuffled.tokens, expected, atol=1e-5)


def test_keep_subset_sees_only_kept_cells():
    m = build_backbone("sapiens2-tiny").eval()
    x = torch.randn(2, 3, 224, 224)
    n = 49
    keep = torch.stack([torch.randperm(n)[:12] for _ in range(2)])
    with torch.no_grad():
        a = m(x, keep=keep)
        # change every pixel of the dropped cells: kept outputs must not move
        y = torch.randn_like(x)
        mask = torch.zeros(2, 1, 7, 7)
        for i in range(2):
            mask[i, 0].view(-1)[keep[i]] = 1
        mask = mask.repeat_interleave(32, 2).repeat_interleave(32, 3)
        b = m(x * mask + y * (1 - mask), keep=keep)
        # and the order of keep only permutes the tokens
        rev = m(x, keep=keep.flip(1))
    assert a.tokens.shape == (2, 12, 64)
    assert torch.allclose(a.tokens, b.tokens, atol=1e-5) and torch.allclose(a.cls, b.cls, atol=1e-5)
    assert torch.allclose(rev.tokens, a.tokens.flip(1), atol=1e-5)
    with pytest.raises(IndexError, match="allowed 0 .. 48"):
        m(x, keep=torch.full((2, 3), 49))


@pytest.mark.parametrize("hw", [(128, 128), (120, 100)])
def test_windowed_layers_do_not_mix_windows(hw):
    """d(window-stage token in window A) / d(pixels of window B) == 0 before pooling."""
    m = build_backbone("sapiens2-tiny", num_registers=1)        # window 4 patches = 64 px
    x = torch.randn(1, 3, *hw, requires_grad=True)
    out = m(x, return_layers=[m.window_layers - 1])
    fmap = out.layers[m.window_layers - 1]                       # [1, D, gh, gw] before pooling
    fmap[0, :, 1, 2].sum().backward()                            # a patch in window (0, 0)
    g = x.grad[0].abs().sum(0)
    assert g[:64, :64].sum() > 0                                 # its own window matters
    assert g[64:, :].abs().sum() == 0 and g[:, 64:].abs().sum() == 0   # other windows do not
    # the CLS token, by design, attends globally in the windowed layers
    x.grad = None
    m(x).cls.sum().backward()
    assert x.grad[0, :, 64:, 64:].abs().sum() > 0


def test_all_parameters_get_gradients_and_checkpointing_matches():
    m = build_backbone("sapiens2-tiny", num_registers=1, layerscale_init=0.1)
    x = torch.randn(2, 3, 96, 112)
    keep = torch.tensor([[0, 3, 5], [1, 2, 11]])
    loss = m(x).tokens.square().mean() + m(x, keep=keep).cls.square().mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    missing = [n for n, g in grads.items() if g is None or g.abs().sum() == 0]
    assert not missing, missing
    m.zero_grad()
    m.set_grad_checkpointing(True)
    loss2 = m(x).tokens.square().mean() + m(x, keep=keep).cls.square().mean()
    loss2.backward()
    assert torch.allclose(loss, loss2)
    for n, p in m.named_parameters():
        assert torch.allclose(p.grad, grads[n], atol=1e-6, rtol=1e-4), n


def test_4k_input_runs():
    m = build_backbone("sapiens2-tiny").eval()
    with torch.no_grad():
        out = m(torch.randn(1, 3, 2160, 3840), return_layers=[0])
    assert out.grid == (68, 120)
    assert out.layers[0].shape == (1, 64, 135, 240)
    assert torch.isfinite(out.tokens).all()
