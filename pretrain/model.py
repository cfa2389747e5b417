"""The trainable pretraining module: one encoder, an MAE pixel decoder and a self-distillation head.

``Encoder`` (backbone + DINO head) is the part the EMA teacher mirrors. ``PretrainModel.forward``
takes the normalised views, the cell masks and the teacher's distributions and returns the losses,
so a DDP/FSDP wrapper sees a single forward per step and both branches' gradients meet in one
encoder: total = MAE + lam * CL.

Views enter the backbone batched per kind: the global views of every sample in one call (masked
for the MAE branch, whose CLS also feeds the student's CL branch, as in iBOT), the local views in a
second call (unmasked unless ``mae.mask_local``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .decoder import MaeDecoder, masked_mse
from .cl import ClHead, ClLoss, koleo_loss

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 images ``[..., 3, H, W]`` -> float32 normalised with the ImageNet statistics."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x.float() / 255.0 - mean) / std


class Encoder(nn.Module):
    """Backbone + optional DINO head; called directly it gives prototype logits of the CLS token."""

    def __init__(self, backbone: nn.Module, head: ClHead | None):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, patches: bool = False):
        """Prototype logits of the CLS token ``[B,K]``; with ``patches`` also of every output token
        ``[B,N,K]`` (the same head; ``cl.patch_weight``)."""
        if self.head is None:
            raise RuntimeError("this encoder has no self-distillation head (objective 'mae')")
        out = self.backbone(x)
        if patches:
            return self.head(out.cls), self.head(out.tokens)
        return self.head(out.cls)


class PretrainModel(nn.Module):
    def __init__(self, cfg: TrainConfig, backbone: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.cell = int(backbone.cell_size)
        head = None
        if cfg.use_cl:
            c = cfg.cl
            head = ClHead(backbone.embed_dim, c.out_dim, c.hidden_dim, c.bottleneck_dim, c.n_layers)
            self.cl_loss = ClLoss(c.out_dim, c.student_temp, c.center_momentum, c.centering,
                                      c.sinkhorn_iters)
            if c.patch_weight > 0:  # its own centre: patch tokens and CLS tokens differ in their mean
                self.patch_loss = ClLoss(c.out_dim, c.student_temp, c.center_momentum, c.centering,
                                         c.sinkhorn_iters)
        self.encoder = Encoder(backbone, head)
        if cfg.use_mae:
            m = cfg.mae
            self.decoder = MaeDecoder(backbone.embed_dim, self.cell, m.decoder_dim, m.decoder_depth,
                                      m.decoder_heads)

    def forward(self, g: torch.Tensor, local: torch.Tensor | None,
                keep_g: torch.Tensor | None, mask_g: torch.Tensor | None,
                keep_l: torch.Tensor | None, mask_l: torch.Tensor | None,
                teacher_probs: list[torch.Tensor] | None,
                teacher_patch_probs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``g``: ``[V*B,3,G,G]`` (view-major), ``local``: ``[L*B,3,S,S]`` or None; keep/mask per
        view batch (None when that batch is not masked); ``teacher_probs``: V tensors ``[B,K]``;
        ``teacher_patch_probs``: ``[V*B,n,K]`` at the student's visible tokens of ``g`` (``cl.patch_weight``)."""
        cfg = self.cfg
        bb = self.encoder.backbone
        n_views = cfg.views.n_global
        out: dict[str, torch.Tensor] = {}
        total = g.new_zeros((), dtype=torch.float32)
        mae_terms: list[tuple[torch.Tensor, int]] = []

        og = bb(g, keep=keep_g)
        if cfg.use_mae:
            pred = self.decoder(og.tokens, keep_g, og.grid)
            mae_terms.append((masked_mse(pred, g, mask_g, self.cell, cfg.mae.norm_pix_loss), g.shape[0]))
        student = []
        if cfg.use_cl:
            student = list(self.encoder.head(og.cls).chunk(n_views))
        if local is not None and local.shape[0] > 0:
            ol = bb(local, keep=keep_l)
            if keep_l is not None and cfg.use_mae:
                pred_l = self.decoder(ol.tokens, keep_l, ol.grid)
                mae_terms.append((masked_mse(pred_l, local, mask_l, self.cell, cfg.mae.norm_pix_loss),
                                  local.shape[0]))
            if cfg.use_cl:
                student += list(self.encoder.head(ol.cls).chunk(local.shape[0] // (g.shape[0] // n_views)))
        if mae_terms:
            n = sum(c for _, c in mae_terms)
            out["loss_mae"] = sum(l * c for l, c in mae_terms) / n
            total = total + out["loss_mae"]
        if cfg.use_cl:
            out["loss_cl"] = self.cl_loss(student, teacher_probs)
            total = total + cfg.lam * out["loss_cl"]
            if teacher_patch_probs is not None:  # same view, same positions: student visible, teacher whole
                logp = F.log_softmax(self.encoder.head(og.tokens).float() / self.patch_loss.student_temp, dim=-1)
                out["loss_cl_patch"] = (-(teacher_patch_probs * logp).sum(dim=-1)).mean()
                total = total + cfg.cl.patch_weight * out["loss_cl_patch"]
            if cfg.cl.koleo_weight > 0:      # per global view, on the backbone's CLS (DINOv2)
                out["loss_koleo"] = sum(koleo_loss(c) for c in og.cls.chunk(n_views)) / n_views
                total = total + cfg.cl.koleo_weight * out["loss_koleo"]
        out["loss"] = total
        return out
