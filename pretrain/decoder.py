"""The light MAE pixel decoder and the masked-only reconstruction loss.

The encoder sees only the kept cells. The decoder projects their tokens to a small width, scatters
them back onto the full output grid with a learned mask token in every hidden cell, adds fixed 2D
sine-cosine positions (so any grid size works: 224 px and 96 px views share one decoder), runs a
few small transformer blocks, predicts ``3 * cell^2`` values per cell and rearranges them to pixels
with ``PixelShuffle(cell)``. The loss is the MSE on masked cells only (optionally against
per-cell normalised targets, MAE's ``norm_pix_loss``).
"""
from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed positions ``[h*w, dim]`` in row-major cell order (half the channels for y, half for x)."""
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float64),
                            torch.arange(w, device=device, dtype=torch.float64), indexing="ij")
    out_y = ys.reshape(-1, 1) * omega
    out_x = xs.reshape(-1, 1) * omega
    emb = torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)
    return emb.to(dtype)


class MaeDecoder(nn.Module):
    """Kept-cell tokens ``[B,K,D]`` + ``keep`` -> predicted pixels ``[B,3,h*cell,w*cell]``."""

    def __init__(self, embed_dim: int, cell_size: int, dim: int = 256, depth: int = 2, heads: int = 8,
                 out_chans: int = 3):
        super().__init__()
        self.cell_size = cell_size
        self.out_chans = out_chans
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, out_chans * cell_size * cell_size)
        self.shuffle = nn.PixelShuffle(cell_size)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        h, w = grid
        b, k, _ = tokens.shape
        x = self.embed(tokens)
        full = self.mask_token.to(x.dtype).expand(b, h * w, x.shape[-1]).clone()
        full.scatter_(1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x)
        full = full + sincos_2d(h, w, x.shape[-1], device=x.device, dtype=x.dtype).unsqueeze(0)
        for blk in self.blocks:
            full = blk(full)
        out = self.pred(self.norm(full))                       # [B, h*w, C*c*c]
        out = out.transpose(1, 2).reshape(b, -1, h, w)          # [B, C*c*c, h, w]
        return self.shuffle(out)                               # [B, C, h*c, w*c]


def to_cells(img: torch.Tensor, cell: int) -> torch.Tensor:
    """``[B,C,h*cell,w*cell]`` -> ``[B, h*w, C*cell*cell]`` (row-major cells)."""
    b, c, hh, ww = img.shape
    if hh % cell or ww % cell:
        raise ValueError(f"image {hh}x{ww} is not a whole number of {cell}-pixel cells")
    x = img.reshape(b, c, hh // cell, cell, ww // cell, cell)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (hh // cell) * (ww // cell), c * cell * cell)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cell: int,
               norm_pix: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """Mean squared error over the pixels of masked cells only.

    ``pred``/``target`` ``[B,C,H,W]`` (H, W multiples of ``cell``), ``mask`` ``[B, N]`` bool with
    True on masked (hidden) cells. Visible cells contribute nothing, whatever the prediction there.
    With ``norm_pix`` every target cell is normalised by its own mean and variance.
    """
    p = to_cells(pred.float(), cell)
    t = to_cells(target.float(), cell)
    if mask.shape != p.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the {tuple(p.shape[:2])} cells")
    if norm_pix:
        mean = t.mean(dim=-1, keepdim=True)
        var = t.var(dim=-1, keepdim=True, unbiased=False)
        t = (t - mean) / (var + eps).sqrt()
    per_cell = (p - t).pow(2).mean(dim=-1)                 # [B, N]
    m = mask.to(per_cell.dtype)
    return (per_cell * m).sum() / m.sum().clamp_min(1.0)
