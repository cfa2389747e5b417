"""MAE branch: cell masks, the masked-only MSE on hand-built examples, the decoder's geometry."""
from __future__ import annotations

import torch

from humans.pretrain.decoder import MaeDecoder, masked_mse, sincos_2d, to_cells
from humans.pretrain.masking import keep_from_mask, num_keep, random_keep


def test_mask_keeps_a_quarter_of_cells_sorted_and_complementary():
    g = torch.Generator().manual_seed(0)
    keep, mask = random_keep(5, 49, 0.75, g)
    assert keep.shape == (5, 12) and num_keep(49, 0.75) == 12
    assert (keep.diff(dim=1) > 0).all()                      # sorted, distinct
    assert mask.sum(1).tolist() == [37] * 5                  # 75 % of 49 cells hidden (rounded)
    assert not mask.gather(1, keep).any()                    # kept cells are not masked
    assert torch.equal(keep_from_mask(mask), keep)
    assert not torch.equal(keep[0], keep[1])                 # independent per sample


def _two_cell_example():
    # one image of 2x2 cells, cell = 2 px; cells 0 and 3 masked, 1 and 2 visible
    target = torch.arange(3 * 4 * 4, dtype=torch.float32).view(1, 3, 4, 4) / 10
    mask = torch.tensor([[True, False, False, True]])
    return target, mask


def test_masked_mse_ignores_visible_cells():
    target, mask = _two_cell_example()
    cells_t = to_cells(target, 2)
    # perfect on the masked cells, badly wrong on the visible ones -> exactly zero
    wrong_visible = cells_t.clone()
    wrong_visible[0, 1] += 7.0
    wrong_visible[0, 2] -= 3.0
    pred = _from_cells(wrong_visible, 2, 2, 2)
    assert masked_mse(pred, target, mask, cell=2).item() == 0.0
    # wrong on the masked cells only -> the mean squared error over the masked pixels only
    wrong_masked = cells_t.clone()
    wrong_masked[0, 0] += 2.0          # every value of cell 0 off by 2 -> squared error 4
    wrong_masked[0, 3] += 1.0          # cell 3 off by 1 -> 1
    pred = _from_cells(wrong_masked, 2, 2, 2)
    assert abs(masked_mse(pred, target, mask, cell=2).item() - (4.0 + 1.0) / 2) < 1e-6
    # and the same prediction scored against the opposite mask is perfect
    assert masked_mse(pred, target, ~mask, cell=2).item() == 0.0


def test_norm_pix_targets_are_per_cell_standardised():
    target, mask = _two_cell_example()
    t = to_cells(target, 2)
    std_t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
    pred = _from_cells(std_t, 2, 2, 2)
    assert masked_mse(pred, target, mask, cell=2, norm_pix=True).item() < 1e-10
    assert masked_mse(pred, target, mask, cell=2, norm_pix=False).item() > 0.1


def _from_cells(cells: torch.Tensor, h: int, w: int, c: int) -> torch.Tensor:
    b = cells.shape[0]
    return cells.view(b, h, w, 3, c, c).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, h * c, w * c)


def test_to_cells_is_row_major_and_invertible():
    img = torch.randn(2, 3, 6, 9)
    cells = to_cells(img, 3)
    assert cells.shape == (2, 6, 27)
    assert torch.equal(cells[1, 4].view(3, 3, 3), img[1, :, 3:6, 3:6])      # row 1, column 1
    assert torch.equal(_from_cells(cells, 2, 3, 3), img)


def test_decoder_scatters_tokens_and_upsamples_to_pixels():
    torch.manual_seed(0)
    dec = MaeDecoder(embed_dim=16, cell_size=8, dim=16, depth=1, heads=2)
    keep = torch.tensor([[0, 5], [2, 3]])
    tokens = torch.randn(2, 2, 16)
    out = dec(tokens, keep, (2, 3))
    assert out.shape == (2, 3, 16, 24)                     # PixelShuffle back to pixels
    # a hidden cell's prediction depends on the visible tokens only through attention, and the
    # visible cell's own token lands in its own cell: changing token 0 of sample 0 changes cell 0
    tokens2 = tokens.clone()
    tokens2[0, 0] += 1.0
    out2 = dec(tokens2, keep, (2, 3))
    assert not torch.allclose(out2[0], out[0]) and torch.equal(out2[1], out[1])
    pos = sincos_2d(2, 3, 16)
    assert pos.shape == (6, 16) and torch.allclose(pos[4], sincos_2d(3, 3, 16)[4])  # (1,1) in both grids
