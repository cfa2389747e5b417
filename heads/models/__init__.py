"""Head architectures (pose deconvolution head, dense heads, linear probes), the backbone + head
model and head checkpoints."""
from humans.heads.models.heads import DenseHead, LinearProbe, PoseHead, build_head, finish
from humans.heads.models.model import HeadModel, load_model, make_head, read_head, save_head

__all__ = ["DenseHead", "LinearProbe", "PoseHead", "build_head", "finish", "HeadModel",
           "load_model", "make_head", "read_head", "save_head"]
