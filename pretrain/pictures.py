"""Pictures of what pretraining learned: MAE reconstructions and PCA of patch features.

- ``reconstructions``: for a pretraining run (its newest checkpoint, decoder included) and a few
  held-out images, one row per image: the masked input (hidden cells grey), the reconstruction (the
  decoder's prediction on hidden cells pasted into the visible ones, as in MAE's figures) and the
  target. Only runs whose objective includes MAE have a decoder.
- ``feature_pca``: for several backbones (``label -> .safetensors``) on the same images, the first
  three principal components of the last block's patch features as RGB (components fitted per
  backbone over the tokens of all the images; foreground/background and body parts separate in
  features that learned them, random features give texture noise).

Both write one PNG and return its path; ``humans-pretrain pictures`` runs them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from humans.shared.log import get_logger

log = get_logger("pretrain.pictures")


def load_images(paths: list[str | Path], size: tuple[int, int]) -> torch.Tensor:
    """RGB images resized to ``size`` (H, W) -> uint8 ``[N, 3, H, W]``."""
    from humans.shared.imageio import decode_rgb

    out = []
    for p in paths:
        rgb = decode_rgb(Path(p).read_bytes(), str(p))
        im = Image.fromarray(rgb).resize((size[1], size[0]), Image.BILINEAR)
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return torch.stack(out)


def _save(fig, out: str | Path) -> Path:
    """Write ``fig`` to ``out`` (folders created) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _denorm(x: torch.Tensor) -> np.ndarray:
    from .model import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x * std + mean).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def reconstructions(run_dir: str | Path, images: list[str | Path], out: str | Path, size: int = 64,
                    mask_ratio: float | None = None, seed: int = 0) -> Path:
    """Masked input / reconstruction / target rows for ``images`` from the newest checkpoint of ``run_dir``."""
    import yaml
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from humans.shared.backbone import build_backbone
    from humans.shared.config import validate

    from .checkpoint import latest_checkpoint, load_checkpoint, step_of
    from .config import TrainConfig
    from .masking import random_keep
    from .model import PretrainModel, normalize

    path = latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir}: no pretraining checkpoint")
    state = load_checkpoint(path)
    cfg = validate(TrainConfig, yaml.safe_load(state["config"]), source=f"{path}: config")
    if not cfg.use_mae:
        raise ValueError(f"{run_dir}: objective {cfg.objective!r} has no MAE decoder to reconstruct with")
    model = PretrainModel(cfg, build_backbone(cfg.model, **cfg.model_overrides)).eval()
    model.load_state_dict(state["model"])
    cell = model.cell
    size = size - size % cell
    x = normalize(load_images(images, (size, size)))
    n_cells = (size // cell) ** 2
    ratio = cfg.mae.mask_ratio if mask_ratio is None else mask_ratio
    keep, mask = random_keep(x.shape[0], n_cells, ratio, torch.Generator().manual_seed(seed))
    bb = model.encoder.backbone
    o = bb(x, keep=keep)
    pred = model.decoder(o.tokens, keep, o.grid)
    up = lambda m: F.interpolate(m.view(-1, 1, size // cell, size // cell).float(), scale_factor=cell)  # noqa: E731
    hidden = up(mask)
    grey = normalize(torch.full((1, 3, size, size), 128, dtype=torch.uint8))
    masked_in = x * (1 - hidden) + grey * hidden
    pasted = x * (1 - hidden) + pred * hidden
    err = float(((pred - x) ** 2).mean(1, keepdim=True).mul(hidden).sum() / hidden.sum().clamp_min(1))
    fig, axes = plt.subplots(len(images), 3, figsize=(6, 2 * len(images)), squeeze=False)
    for i in range(len(images)):
        for j, (im, title) in enumerate(((masked_in[i], f"input ({ratio:.0%} hidden)"),
                                         (pasted[i], "reconstruction"), (x[i], "target"))):
            axes[i, j].imshow(_denorm(im))
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(title, fontsize=8)
    fig.suptitle(f"{Path(run_dir).name}: step {step_of(path)}, masked-cell MSE {err:.3f} (normalised pixels)",
                 fontsize=8)
    return _save(fig, out)


@torch.no_grad()
def feature_pca(backbones: dict[str, str | Path], images: list[str | Path], out: str | Path,
                size: tuple[int, int] = (128, 96)) -> Path:
    """One row per image: the image, then the first three PCA components of each backbone's patch features."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from humans.shared.backbone import load_backbone

    from .model import normalize

    x = normalize(load_images(images, size))
    cols = {}
    for label, path in backbones.items():
        bb = load_backbone(path).eval()
        o = bb(x)
        tok = o.tokens.float()                                   # [N, h*w, D]
        h, w = o.grid
        flat = tok.reshape(-1, tok.shape[-1])
        flat = flat - flat.mean(0)
        _, _, v = torch.pca_lowrank(flat, q=3, center=False)
        comp = (flat @ v[:, :3]).reshape(x.shape[0], h, w, 3)
        lo, hi = comp.reshape(-1, 3).quantile(0.02, 0), comp.reshape(-1, 3).quantile(0.98, 0)
        cols[label] = ((comp - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1).numpy()
    fig, axes = plt.subplots(len(images), 1 + len(cols), figsize=(1.6 * (1 + len(cols)), 2.1 * len(images)),
                             squeeze=False)
    for i in range(len(images)):
        axes[i, 0].imshow(_denorm(x[i]))
        for j, (label, c) in enumerate(cols.items(), start=1):
            axes[i, j].imshow(c[i], interpolation="nearest")
            if i == 0:
                axes[i, j].set_title(label, fontsize=8)
        for ax in axes[i]:
            ax.set_axis_off()
    axes[0, 0].set_title("image", fontsize=8)
    fig.suptitle("patch features, first 3 PCA components as RGB", fontsize=8)
    return _save(fig, out)
