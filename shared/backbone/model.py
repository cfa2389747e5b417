"""The Backbone module: patch embedding, windowed stage, CLS-guided pooling, global stage.

Token bookkeeping (see docs/backbone.md):
- the image is zero-padded to a multiple of the patch size; the patch grid ``(gh, gw)`` is padded
  with masked dummy tokens to whole cells (``pool_stride``) and whole windows;
- during the windowed layers the patch tokens are kept window-major (window, cell in window, patch
  in cell), so a window is a contiguous run of tokens and a cell a contiguous run of stride^2;
- pooling turns each output cell (row-major over ``grid = ceil(H / cell_size), ceil(W / cell_size)``)
  into one token; the global layers then see the special tokens plus one token per cell.
With ``keep`` (MAE) only the kept cells' patches enter; windowed layers attend among kept tokens
of the same window (group ids), which equals the full forward when every cell is kept.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import BackboneConfig
from .layers import AttnContext, Block, RMSNorm, SwiGLU, rope_freqs
from .pooling import CLSGuidedPool


@dataclass
class BackboneOutput:
    cls: torch.Tensor                              # [B, D]
    tokens: torch.Tensor                           # [B, N, D] (N = h*w, or K kept cells)
    grid: tuple[int, int]                          # output grid (h, w) in cells
    layers: dict[int, torch.Tensor] = field(default_factory=dict)   # idx -> [B, D, h_i, w_i]
    registers: torch.Tensor | None = None          # [B, R, D] when the config has registers


@dataclass
class Layout:
    """Index maps for one patch grid (computed once per input size and device)."""

    gh: int
    gw: int
    ch: int
    cw: int
    stride: int
    hp: int
    wp: int
    wh: int
    ww: int
    n_windows: int
    order: torch.Tensor        # [hp*wp] padded-grid flat index of each window-major token
    valid: torch.Tensor        # [hp*wp] window-major: token inside the real patch grid
    pos: torch.Tensor          # [hp*wp, 2] window-major (row, col) in patches
    cell_select: torch.Tensor  # [ch*cw] window-major cell index of each output cell (row-major)
    patch_select: torch.Tensor  # [gh*gw] window-major token index of each real patch (row-major)
    cell_pos: torch.Tensor     # [ch*cw, 2] cell centres in patch units
    padded: bool


def make_layout(gh: int, gw: int, stride: int, window: int | None, device=None) -> Layout:
    s = stride
    ch, cw = math.ceil(gh / s), math.ceil(gw / s)
    if window is None:        # no windowed layers: one "window" = the whole cell-padded grid
        wh, ww = ch * s, cw * s
    else:                     # a window larger than the grid is the whole grid
        wh, ww = min(window, ch * s), min(window, cw * s)
    hp, wp = math.ceil(ch * s / wh) * wh, math.ceil(cw * s / ww) * ww
    nwh, nww = hp // wh, wp // ww
    # token enumeration (wr, wc, cr, cc, pr, pc): window, cell in window, patch in cell
    ar = torch.arange
    wr, wc = ar(nwh).view(-1, 1, 1, 1, 1, 1), ar(nww).view(1, -1, 1, 1, 1, 1)
    cr, cc = ar(wh // s).view(1, 1, -1, 1, 1, 1), ar(ww // s).view(1, 1, 1, -1, 1, 1)
    pr, pc = ar(s).view(1, 1, 1, 1, -1, 1), ar(s).view(1, 1, 1, 1, 1, -1)
    rows = (wr * wh + cr * s + pr).expand(nwh, nww, wh // s, ww // s, s, s).reshape(-1)
    cols = (wc * ww + cc * s + pc).expand(nwh, nww, wh // s, ww // s, s, s).reshape(-1)
    order = rows * wp + cols
    valid = (rows < gh) & (cols < gw)
    pos = torch.stack([rows, cols], dim=1)
    # window-major cell index -> padded cell grid position
    cell_rows, cell_cols = rows[:: s * s] // s, cols[:: s * s] // s
    cell_of = torch.full((hp // s, wp // s), -1, dtype=torch.long)
    cell_of[cell_rows, cell_cols] = ar(cell_rows.numel())
    cell_select = cell_of[:ch, :cw].reshape(-1)
    tok_of = torch.full((hp, wp), -1, dtype=torch.long)
    tok_of[rows, cols] = ar(rows.numel())
    patch_select = tok_of[:gh, :gw].reshape(-1)
    gr, gc = torch.meshgrid(ar(ch), ar(cw), indexing="ij")
    cell_pos = torch.stack([gr.reshape(-1), gc.reshape(-1)], dim=1).float() * s + (s - 1) / 2
    t = lambda x: x.to(device)  # noqa: E731
    return Layout(gh, gw, ch, cw, s, hp, wp, wh, ww, nwh * nww, t(order), t(valid), t(pos),
                  t(cell_select), t(patch_select), t(cell_pos), bool((~valid).any()))


class Backbone(nn.Module):
    """Sapiens2-style ViT with hierarchical attention. See module docstring and docs/backbone.md."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        cfg = self.config = config
        self.embed_dim = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.pool_stride = cfg.effective_stride
        self.cell_size = cfg.cell_size
        self.num_layers = cfg.depth
        self.window_layers = cfg.effective_window_layers
        self.num_registers = cfg.num_registers
        self.num_special = 1 + cfg.num_registers
        self.grad_checkpointing = False
        self.real_rope = False                       # export form (see export_form)
        d = cfg.embed_dim
        self.patch_embed = nn.Conv2d(cfg.in_chans, d, cfg.patch_size, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.registers = nn.Parameter(torch.zeros(1, cfg.num_registers, d)) if cfg.num_registers else None
        dpr = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist() if cfg.drop_path_rate else [0.0] * cfg.depth
        self.blocks = nn.ModuleList(Block(cfg, cfg.layer_kv_heads(i), dpr[i]) for i in range(cfg.depth))
        self.pool = CLSGuidedPool(d, cfg.num_heads, cfg.bias, cfg.norm_eps) if self.pool_stride > 1 else None
        self.norm = RMSNorm(d, eps=cfg.norm_eps)
        self._layouts: dict[tuple, Layout] = {}
        self.init_weights()

    # ---------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=0.02)
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        if self.registers is not None:
            nn.init.normal_(self.registers, std=0.02)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward (saves memory for the large configs)."""
        self.grad_checkpointing = enable

    def export_form(self) -> "Backbone":
        """A copy of this backbone (evaluation mode, same weights) in the form that ``torch.jit.trace``
        and the ONNX exporter take: RoPE with real (cos, sin) arithmetic instead of complex tensors,
        RMSNorm and the SwiGLU gate written with elementary ops instead of custom autograd functions.
        Same outputs up to float rounding; the original is left as it is."""
        m = copy.deepcopy(self).eval()
        m.real_rope = True
        for mod in m.modules():
            if isinstance(mod, (RMSNorm, SwiGLU)):
                mod.elementary = True
        return m

    def layout(self, gh: int, gw: int, device) -> Layout:
        key = (gh, gw, str(device))
        if key not in self._layouts:
            if len(self._layouts) >= 64:                 # many input sizes: forget the oldest
                self._layouts.pop(next(iter(self._layouts)))
            window = self.config.window_size if self.window_layers else None
            self._layouts[key] = make_layout(gh, gw, self.pool_stride, window, device)
        return self._layouts[key]

    def _run(self, blk: Block, x: torch.Tensor, ctx: AttnContext) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(blk, x, ctx, use_reentrant=False)
        return blk(x, ctx)

    def _rope(self, pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Complex rotations ``[1|B, S+N, 1, d/2]`` for patch positions ``[(B,) N, 2]``; specials: 1.

        ``rope_coords="normalized"`` (released Sapiens2): a patch centre ``(r + 0.5) / gh`` mapped to
        [-1, 1] per axis, angles ``2 pi coord / period`` (period = 1 / frequency); ``grid`` = (gh, gw)
        is the real patch grid."""
        pos = pos if pos.dim() == 3 else pos[None]
        if self.config.rope_coords == "normalized":
            size = torch.tensor(grid, dtype=torch.float32, device=pos.device)
            pos = (2.0 * (pos.float() + 0.5) / size - 1.0) * (2 * math.pi)
        pos = torch.cat([pos.new_zeros(pos.shape[0], self.num_special, 2), pos], dim=1)
        return rope_freqs(pos, self.config.head_dim, self.config.rope_theta, real=self.real_rope)[:, :, None]

    def _norm_layers(self, idx: Sequence[int]) -> dict[int, list[int]]:
        """Block index (0-based) -> the requested keys that name it (negative allowed)."""
        out: dict[int, list[int]] = {}
        for i in idx:
            j = i + self.num_layers if i < 0 else i
            if not 0 <= j < self.num_layers:
                raise IndexError(f"return_layers: layer {i} out of range for {self.num_layers} layers "
                                 f"(allowed {-self.num_layers} .. {self.num_layers - 1})")
            out.setdefault(j, []).append(i)
        return out

    # ---------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None,
                return_layers: Sequence[int] = ()) -> BackboneOutput:
        if x.dim() != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected images [B, {self.config.in_chans}, H, W], got {tuple(x.shape)}")
        want = self._norm_layers(return_layers)
        if keep is not None and want:
            raise ValueError("return_layers is only supported when keep is None")
        b, _, hh, ww = x.shape
        p = self.patch_size
        x = F.pad(x, (0, (-ww) % p, 0, (-hh) % p))
        feat = self.patch_embed(x)                       # [B, D, gh, gw]
        gh, gw = feat.shape[-2:]
        lay = self.layout(gh, gw, x.device)
        specials = self.cls_token.expand(b, -1, -1)
        if self.registers is not None:
            specials = torch.cat([specials, self.registers.expand(b, -1, -1)], dim=1)
        if keep is None:
            return self._forward_full(feat, specials, lay, want)
        return self._forward_keep(feat, specials, lay, keep)

    def _forward_full(self, feat, specials, lay: Layout, want: dict[int, list[int]]) -> BackboneOutput:
        b, d = feat.shape[:2]
        S, st = self.num_special, lay.stride
        feat = F.pad(feat, (0, lay.wp - lay.gw, 0, lay.hp - lay.gh)).flatten(2).transpose(1, 2)
        x = torch.cat([specials, feat.index_select(1, lay.order)], dim=1)
        layers: dict[int, torch.Tensor] = {}
        k = self.window_layers
        if k:
            rope = self._rope(lay.pos, (lay.gh, lay.gw))
            t = lay.valid.numel() // lay.n_windows
            ctx = AttnContext(rope, S, "windows", lay.n_windows,
                              lay.valid.view(lay.n_windows, t) if lay.padded else None,
                              lay.valid[None] if lay.padded else None)
            for i in range(k):
                x = self._run(self.blocks[i], x, ctx)
                if i in want:
                    m = self.norm(x[:, S:]).index_select(1, lay.patch_select)
                    fm = m.transpose(1, 2).reshape(b, d, lay.gh, lay.gw)
                    for key in want[i]:
                        layers[key] = fm
        patches = x[:, S:].reshape(b, -1, st * st, d).index_select(1, lay.cell_select)
        if self.pool is not None:
            valid = lay.valid.view(-1, st * st).index_select(0, lay.cell_select)[None] if lay.padded else None
            cells = self.pool(x[:, 0], patches, valid)
        else:
            cells = patches[:, :, 0]
        x = torch.cat([x[:, :S], cells], dim=1)
        rope = self._rope(lay.cell_pos, (lay.gh, lay.gw))
        ctx = AttnContext(rope, S)
        for i in range(k, self.num_layers):
            x = self._run(self.blocks[i], x, ctx)
            if i in want:
                fm = self.norm(x[:, S:]).transpose(1, 2).reshape(b, d, lay.ch, lay.cw)
                for key in want[i]:
                    layers[key] = fm
        x = self.norm(x)
        return BackboneOutput(x[:, 0], x[:, S:], (lay.ch, lay.cw), layers,
                              x[:, 1:S] if S > 1 else None)

    def _forward_keep(self, feat, specials, lay: Layout, keep: torch.Tensor) -> BackboneOutput:
        b, d = feat.shape[:2]
        S, st = self.num_special, lay.stride
        ncell = lay.ch * lay.cw
        if keep.dim() != 2 or keep.shape[0] != b:
            raise ValueError(f"keep must be [B={b}, K] cell indices, got {tuple(keep.shape)}")
        keep = keep.to(feat.device, torch.long)
        if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= ncell):
            raise IndexError(f"keep indexes cells of the {lay.ch}x{lay.cw} output grid: "
                             f"allowed 0 .. {ncell - 1}")
        kk = keep.shape[1]
        cr, cc = keep // lay.cw, keep % lay.cw                          # [B, K]
        off = torch.arange(st, device=feat.device)
        rows = (cr[:, :, None, None] * st + off[:, None]).expand(b, kk, st, st).reshape(b, -1)
        cols = (cc[:, :, None, None] * st + off[None, :]).expand(b, kk, st, st).reshape(b, -1)
        hc, wc = lay.ch * st, lay.cw * st
        feat = F.pad(feat, (0, wc - lay.gw, 0, hc - lay.gh)).flatten(2).transpose(1, 2)
        idx = rows * wc + cols                                           # [B, K*st*st]
        x = torch.cat([specials, feat.gather(1, idx[..., None].expand(-1, -1, d))], dim=1)
        valid = (rows < lay.gh) & (cols < lay.gw)
        padded = bool((~valid).any())
        k = self.window_layers
        if k:
            nww = lay.wp // lay.ww
            group = (rows // lay.wh) * nww + cols // lay.ww
            uniq = lay.n_windows + torch.arange(group.shape[1], device=group.device)
            group = torch.where(valid, group, uniq)                       # padding: alone
            rope = self._rope(torch.stack([rows, cols], dim=-1), (lay.gh, lay.gw))
            ctx = AttnContext(rope, S, "groups", key_valid=valid if padded else None, group=group)
            for i in range(k):
                x = self._run(self.blocks[i], x, ctx)
        patches = x[:, S:].reshape(b, kk, st * st, d)
        if self.pool is not None:
            cells = self.pool(x[:, 0], patches, valid.view(b, kk, st * st) if padded else None)
        else:
            cells = patches[:, :, 0]
        x = torch.cat([x[:, :S], cells], dim=1)
        cpos = torch.stack([cr, cc], dim=-1).float() * st + (st - 1) / 2
        rope = self._rope(cpos, (lay.gh, lay.gw))
        ctx = AttnContext(rope, S)
        for i in range(k, self.num_layers):
            x = self._run(self.blocks[i], x, ctx)
        x = self.norm(x)
        return BackboneOutput(x[:, 0], x[:, S:], (lay.ch, lay.cw), {}, x[:, 1:S] if S > 1 else None)

    def forward_features(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Feature maps ``[B, D, h_i, w_i]`` of ``layers`` (in that order), final norm applied."""
        out = self.forward(x, return_layers=layers)
        return [out.layers[i] for i in layers]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
