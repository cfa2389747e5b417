"""What a task is to the rest of ``heads/``: ``TaskSpec``, the one interface every consumer (models,
data, training, evaluation, probing, prediction, export) looks a task up by, and the two shared
families of whole-image tasks.

A spec declares, per task:
- **output**: ``channels``, ``finish`` (the output map: identity, unit vectors, sigmoid), ``out_hw``
  (size the head predicts at) and ``decoder`` (the full head's architecture family);
- **target encoding**: ``label_folder`` (where labels live in the ``humans-dense-v1`` layout),
  ``items`` (the units: images or annotated people), ``load_target`` (labels at the original
  resolution), ``load_sample`` (input image and labels at the network size, mirrored on request),
  ``view`` (features of whole images or of person crops) and ``batch_targets`` (the loss inputs);
- **loss**: ``loss`` (weights from ``heads.config.LossConfig``);
- **metrics and evaluation**: ``metric`` (the accumulator), ``metric_rows`` (what tables show and
  which way is better), ``update_metric`` (one output against its labels), ``flip_test`` and
  ``flip_back``, ``mean_output`` (the mean-prediction baseline), ``prior`` (the raw-output map a
  dense head starts from: the same per-pixel mean), ``eval_files``/``eval_record``;
- **visualisation**: ``overlay``;
- **export form**: ``model_output`` (what ``HeadModel`` and hence ONNX/TorchScript return),
  ``predict`` (one image -> the interchange array), ``write_prediction``/``write_predictions``
  (files besides ``.npy`` and the overlay).

``data`` arguments are ``heads.data.dataset.DenseData`` objects; they are not imported here, so the
data reader can look tasks up without an import cycle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from humans.heads.data import transforms as T
from humans.heads.data.features import to_tensor


PRIOR_SHRINK = 8.0  # a dense head's prior: per-pixel means shrunk towards the global mean by 8 pseudo-labels


class TaskSpec:
    """Base of all task specs (see the module docstring); subclasses override what differs."""

    name: str = ""
    channels: int = 0                         # output channels of the head
    decoder: str = "dense"                    # full head: "deconv" (PoseHead) or "dense" (DenseHead)
    default_width: int = 128                  # full head width when HeadConfig.channels is None
    default_token_blocks: int = 0             # dense head's residual blocks at the token grid when
                                              # HeadConfig.token_blocks is None
    small_init: bool = False                  # linear probe: output layer starts near zero
    dense: bool = True                        # per-pixel labels at out_hw, input image kept (skip input)
    view: str = "whole"                       # features of "whole" images or person "crop"s
    flip_test: bool = False                   # outputs can be averaged with the mirrored input's
    label_folder: tuple[str, tuple[str, ...]] | None = None  # DATA/<folder>/<key><ext>
    metric_rows: tuple[tuple[str, str, bool], ...] = ()      # (metric key, table label, higher is better)

    # ------------------------------------------------------------------ output
    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """The output map applied to raw head outputs [B, C, h, w]."""
        return y

    def out_hw(self, cfg) -> tuple[int, int]:
        """Size of the head output and of the training targets for a ``HeadConfig``."""
        return (max(1, cfg.size[0] // cfg.label_stride), max(1, cfg.size[1] // cfg.label_stride))

    def upsample(self, y: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Outputs [B, C, h, w] resized bilinearly to ``hw`` (kept valid for the task)."""
        return F.interpolate(y, size=hw, mode="bilinear", align_corners=False)

    def model_output(self, y: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
        """Export form: what ``HeadModel`` returns for the head output ``y`` on an input of ``input_hw``."""
        if tuple(y.shape[-2:]) == tuple(input_hw):
            return y
        return self.upsample(y, tuple(input_hw))

    # ------------------------------------------------------------------ target encoding
    def items(self, data, keys: list[str]) -> list:
        folder, exts = self.label_folder
        return data.labelled_items(folder, exts, keys)

    def load_target(self, data, item) -> dict:
        raise NotImplementedError

    def load_sample(self, data, item, size: tuple[int, int], flip: bool) -> dict:
        raise NotImplementedError

    def batch_targets(self, targets: dict[str, torch.Tensor], idx: torch.Tensor, cfg) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------------ loss
    def loss(self, pred: torch.Tensor, batch: dict, w) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ metrics and evaluation
    def metric(self, coco_dir: str | Path | None = None):
        raise NotImplementedError

    def flip_back(self, out: torch.Tensor) -> torch.Tensor:
        raise ValueError(f"flip test is not implemented for {self.name}")

    def update_metric(self, metric, out: torch.Tensor, target: dict, extra: dict, cfg) -> None:
        """Add one output [C, h, w] (``extra``: that sample's entries of ``TaskTensors.extra``)."""
        raise NotImplementedError

    def mean_output(self, targets: dict[str, torch.Tensor], cfg, per_pixel: bool) -> torch.Tensor:
        """The mean-prediction baseline's one output [C, h, w] from the training targets."""
        raise NotImplementedError

    def prior(self, targets: dict[str, torch.Tensor], cfg) -> torch.Tensor | None:
        """Raw (before ``finish``) outputs [C, h, w] whose finished form is the per-pixel mean of the
        training targets, shrunk towards their global mean by ``PRIOR_SHRINK`` pseudo-labels: the map a
        dense head adds its output to (``HeadConfig.mean_prior``), so it starts at about the
        mean-prediction baseline. None: the task's head has no prior (pose)."""
        return None

    def eval_files(self, out_json: str | None) -> Path | None:
        """Folder for the metric's interchange files beside an eval JSON (None: the task writes none)."""
        return None

    def eval_record(self, files: Path | None) -> dict:
        """Entries added to the eval JSON about those files."""
        return {}

    # ------------------------------------------------------------------ prediction and visualisation
    def predict(self, model, img: np.ndarray, bbox=None) -> np.ndarray:
        """The interchange array for one HxWx3 uint8 image, at the image's resolution."""
        raise NotImplementedError

    def overlay(self, img: np.ndarray, pred: np.ndarray, min_score: float = 0.2) -> np.ndarray:
        raise NotImplementedError

    truth_key: str | None = None   # the ``load_target`` entry that has ``predict``'s format (default: name)

    def truth(self, data, key: str) -> np.ndarray | None:
        """The ground truth of image ``key`` of ``data`` in the format ``predict`` returns, for an
        overlay beside the prediction (None: the image has no label for this task)."""
        items = data.items(self.name, [key])
        return self.load_target(data, items[0])[self.truth_key or self.name] if items else None

    def truth_and_valid(self, data, key: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``truth`` and, for a map task, its labelled pixels [H, W] (None: not a map task, or no label),
        from one read of the labels."""
        return self.truth(data, key), None

    def write_prediction(self, out: Path, stem: str, pred: np.ndarray) -> list[Path]:
        """Files besides ``<stem>.npy`` and ``<stem>.png`` for one image."""
        return []

    def write_predictions(self, out: Path, records: list[dict[str, Any]]) -> list[Path]:
        """Files for the whole run; ``records``: image_id, path, width, height, pred per image."""
        return []


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class WholeImageTask(TaskSpec):
    """A task labelled per pixel of the whole image (seg and the map tasks)."""

    def load_sample(self, data, item, size: tuple[int, int], flip: bool) -> dict:
        img = data.image(item.key)
        hw = img.shape[:2]
        image = T.resize_image(img, size)
        out = self.resize_labels(self.load_target(data, item), size, flip)
        if flip:
            image = image[:, ::-1]
        out["orig_hw"] = hw
        out["image"] = np.ascontiguousarray(image)
        return out

    def resize_labels(self, target: dict, size: tuple[int, int], flip: bool) -> dict:
        raise NotImplementedError

    def label_hw(self, target: dict) -> tuple[int, int]:
        raise NotImplementedError

    def update_metric(self, metric, out: torch.Tensor, target: dict, extra: dict, cfg) -> None:
        up = self.upsample(out[None], self.label_hw(target))[0]
        self.update_dense(metric, up, target)

    def update_dense(self, metric, up: torch.Tensor, target: dict) -> None:
        raise NotImplementedError

    def predict(self, model, img: np.ndarray, bbox=None) -> np.ndarray:
        out = model(to_tensor([T.resize_image(img, tuple(model.config.size))]).to(_device(model))).float().cpu()
        return self.decode(self.upsample(out, img.shape[:2])[0])

    def decode(self, up: torch.Tensor) -> np.ndarray:
        """An output [C, H, W] at image resolution -> the interchange array."""
        return up.permute(1, 2, 0).numpy()


class MapTask(WholeImageTask):
    """A 3-channel map per pixel, valid where the person is (pointmap, normal, albedo)."""

    channels = 3
    read_exts: tuple[str, ...] = ()

    def read(self, path: Path, hw: tuple[int, int]) -> np.ndarray:
        from humans.heads.data.io import read_dense

        return read_dense(path, self.name, hw)

    def check(self, path: Path, arr: np.ndarray, valid: np.ndarray) -> None:
        """Raise ``AnnotationError`` for labels that break the task's constraints."""

    def valid_without_mask(self, arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Valid pixels when DATA has no person mask: the map is zero outside the person."""
        return np.abs(arr).sum(-1) > 0

    def valid(self, data, key: str, hw: tuple[int, int], arr: np.ndarray) -> np.ndarray:
        mask = data.mask(key, hw)
        return mask if mask is not None else self.valid_without_mask(arr, hw)

    def load_target(self, data, item) -> dict:
        path = data.label_path(self.name, item.key)
        hw = data.image_hw(item.key)
        arr = self.read(path, hw)
        valid = self.valid(data, item.key, hw, arr)
        self.check(path, arr, valid)
        return {self.name: arr, "valid": valid}

    def flip_map(self, arr: np.ndarray) -> np.ndarray:
        """A map of the mirrored image (vector maps also negate x)."""
        return arr[:, ::-1]

    def resize_labels(self, target: dict, size: tuple[int, int], flip: bool) -> dict:
        arr = T.resize_nearest(target[self.name], size)
        valid = T.resize_nearest(target["valid"], size)
        if flip:
            arr = self.flip_map(arr)
            valid = valid[:, ::-1]
        return {self.name: np.ascontiguousarray(arr, dtype=np.float32), "valid": np.ascontiguousarray(valid)}

    def label_hw(self, target: dict) -> tuple[int, int]:
        return target[self.name].shape[:2]

    def batch_targets(self, targets: dict[str, torch.Tensor], idx: torch.Tensor, cfg) -> dict[str, torch.Tensor]:
        return {self.name: targets[self.name][idx].float().permute(0, 3, 1, 2), "valid": targets["valid"][idx][:, None]}

    def update_dense(self, metric, up: torch.Tensor, target: dict) -> None:
        metric.update(self.decode(up), target[self.name], target["valid"])

    def truth_and_valid(self, data, key: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        items = data.items(self.name, [key])
        if not items:
            return None, None
        target = self.load_target(data, items[0])
        return target[self.truth_key or self.name], np.asarray(target["valid"], bool)

    def mean_map(self, targets: dict[str, torch.Tensor], per_pixel: bool, shrink: float = 0.0) -> torch.Tensor:
        """The mean of the valid training labels [C, h, w]: per pixel position (the global mean where a
        position has no valid label) or one global mean everywhere. ``shrink`` = k > 0 pulls each
        position's mean towards the global one as if k more labels held the global mean there (a
        position labelled in few images gets a noisy mean otherwise)."""
        v = targets["valid"].float()[..., None]
        x = targets[self.name].float()
        glob = (x * v).sum((0, 1, 2)) / v.sum().clamp_min(1)
        if per_pixel:
            cnt = v.sum(0)
            if shrink > 0:
                const = ((x * v).sum(0) + shrink * glob) / (cnt + shrink)
            else:
                const = torch.where(cnt > 0, (x * v).sum(0) / cnt.clamp_min(1), glob)
        else:
            const = glob.expand(x.shape[1:])
        return const.permute(2, 0, 1)

    def mean_output(self, targets: dict[str, torch.Tensor], cfg, per_pixel: bool) -> torch.Tensor:
        return self.finish_mean(self.mean_map(targets, per_pixel))

    def prior(self, targets: dict[str, torch.Tensor], cfg) -> torch.Tensor | None:
        return self.unfinish(self.mean_map(targets, per_pixel=True, shrink=PRIOR_SHRINK))

    def unfinish(self, mean: torch.Tensor) -> torch.Tensor:
        """Raw outputs whose ``finish`` is (close to) ``mean`` [C, h, w] (identity; albedo: logit)."""
        return mean

    def finish_mean(self, const: torch.Tensor) -> torch.Tensor:
        """The mean map [3, h, w] made a valid output of the task."""
        return const
