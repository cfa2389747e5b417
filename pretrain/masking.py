"""MAE masking at cell granularity: which output-grid cells each sample keeps.

The masking unit is the backbone's cell (``cell_size`` pixels a side): one patch for the plain
global ViTs (the named 1K configs, so masking is per patch as in MAE and the seed), ``pool_stride``
x ``pool_stride`` patches for hierarchical configs, whose CLS-guided pooling needs whole cells.
The trainer masks every view (global and, with ``mae.mask_local``, local) at ``mae.mask_ratio``.
The backbone needs the same number ``K`` of kept cells in every sample; ``keep`` lists kept cells in row-major grid order (sorted), and
``mask`` marks the hidden cells (True = masked, the ones the MAE loss is computed on).
"""
from __future__ import annotations

import torch


def num_keep(n_cells: int, mask_ratio: float) -> int:
    """Cells kept visible out of ``n_cells`` (at least one, at most ``n_cells - 1``)."""
    if n_cells < 2:
        raise ValueError(f"cannot mask a grid of {n_cells} cell(s): views must span at least 2 cells")
    return min(n_cells - 1, max(1, int(round(n_cells * (1.0 - mask_ratio)))))


def random_keep(batch: int, n_cells: int, mask_ratio: float, generator: torch.Generator,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Independent uniform masks per sample: ``(keep [B,K] int64 sorted, mask [B,N] bool)``."""
    k = num_keep(n_cells, mask_ratio)
    noise = torch.rand(batch, n_cells, generator=generator)
    keep = noise.argsort(dim=1)[:, :k].sort(dim=1).values
    mask = torch.ones(batch, n_cells, dtype=torch.bool)
    mask.scatter_(1, keep, False)
    return keep.to(device), mask.to(device)


def keep_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``keep`` indices (sorted) from a boolean mask [B,N] with the same count of False per row."""
    counts = (~mask).sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"every sample must keep the same number of cells, got {counts.tolist()}")
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return idx[~mask].view(mask.shape[0], -1)
