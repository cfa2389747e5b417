"""Frozen-backbone features for the heads, and their cache.

``FeatureExtractor`` wraps a backbone: it freezes it (``requires_grad=False``, eval mode, kept in
eval mode by ``train()``), normalises [0, 1] RGB input, asks for the chosen layers and returns them
concatenated along channels at the finest of their grids. ``extract_all`` runs it over a list of
samples in batches; ``FeatureCache`` stores features on disk as ``KEY.npy`` (float16) under a key
made of the backbone file's hash, the layers, the input size, the flip flag and the sample list, so
a second run (probe over several tasks, another head on the same features) reads instead of
recomputing. Features are written batch by batch as they are computed and read back through a
memory map: training and evaluation index the rows of each batch from disk, so the features of a
large backbone on thousands of images never have to fit in RAM. Without a cache folder the files go
to a temporary folder removed when the process exits.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from humans.shared.atomic import AtomicFile
from humans.shared.log import get_logger, progress

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
log = get_logger("heads.features")


class FeatureExtractor(nn.Module):
    """Frozen backbone -> [B, D * len(layers), h, w] features of [0, 1] RGB images [B, 3, H, W]."""

    def __init__(self, backbone: nn.Module, layers: Sequence[int], mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.backbone = backbone
        self.layers = [int(i) for i in layers]
        n = int(getattr(backbone, "num_layers", 0))
        for i in self.layers:
            if n and not -n <= i < n:
                raise ValueError(f"layers: {i} out of range for a backbone with {n} layers "
                                 f"(allowed {-n} .. {n - 1})")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()

    @property
    def stride(self) -> int:
        """Pixels per feature cell: the patch size when a chosen layer comes before the backbone's
        pooling (windowed stage), else its cell size."""
        cfg = getattr(self.backbone, "config", None)
        n = int(getattr(self.backbone, "num_layers", 0))
        windowed = int(getattr(cfg, "effective_window_layers", 0) or 0)
        if any((i + n if i < 0 else i) < windowed for i in self.layers):
            return int(self.backbone.patch_size)
        return int(self.backbone.cell_size)

    @property
    def out_channels(self) -> int:
        return int(self.backbone.embed_dim) * len(self.layers)

    def train(self, mode: bool = True):  # the backbone stays frozen in eval mode
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        feats = self.backbone.forward_features(x, self.layers)
        hh = max(f.shape[-2] for f in feats)
        ww = max(f.shape[-1] for f in feats)
        feats = [f if f.shape[-2:] == (hh, ww) else F.interpolate(f, size=(hh, ww), mode="bilinear",
                                                                   align_corners=False) for f in feats]
        return torch.cat(feats, dim=1)


def to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 arrays -> [B, 3, H, W] float in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def extract_all(extractor: FeatureExtractor, n: int, get_image: Callable[[int], np.ndarray],
                batch_size: int = 16, desc: str = "features", device: str = "cpu") -> torch.Tensor:
    """Features [n, C, h, w] (float16) of images ``get_image(0..n-1)``, in batches."""
    extractor.eval().to(device)
    out = []
    for start in progress(range(0, n, batch_size), desc=desc, total=(n + batch_size - 1) // batch_size,
                          unit="batch"):
        imgs = [get_image(i) for i in range(start, min(n, start + batch_size))]
        out.append(extractor(to_tensor(imgs).to(device)).half().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file (the backbone checkpoint), cached by path, size and mtime within the process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict[tuple, str] = {}


_TMP_ROOT: Path | None = None


def _process_tmp_root() -> Path:
    """A per-process temporary feature folder, removed at exit."""
    global _TMP_ROOT
    if _TMP_ROOT is None:
        _TMP_ROOT = Path(tempfile.mkdtemp(prefix="humans-features-"))
        atexit.register(shutil.rmtree, _TMP_ROOT, True)
    return _TMP_ROOT


class FeatureWriter:
    """Rows of one feature array appended batch by batch to ``KEY.npy.tmpPID``; ``commit`` renames it."""

    def __init__(self, path: Path, n: int):
        self.path, self.n, self.pos = path, n, 0
        self._file = AtomicFile(path)
        self.tmp = self._file.tmp
        self._mm: np.memmap | None = None

    def write(self, feats: torch.Tensor) -> None:
        arr = feats.detach().to("cpu", torch.float16).numpy()
        if self._mm is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._mm = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float16,
                                                 shape=(self.n, *arr.shape[1:]))
        if self.pos + len(arr) > self.n:
            raise ValueError(f"{self.path}: more feature rows than the {self.n} announced")
        self._mm[self.pos:self.pos + len(arr)] = arr
        self.pos += len(arr)

    def commit(self) -> None:
        if self._mm is None or self.pos != self.n:
            raise ValueError(f"{self.path}: {self.pos} of {self.n} feature rows written")
        self._mm.flush()
        del self._mm
        self._mm = None
        self._file.commit()

    def abort(self) -> None:
        self._mm = None
        self._file.abort()


class FeatureCache:
    """Feature arrays on disk (``KEY.npy``, float16) under ``root`` (None: a per-process temporary
    folder), keyed by everything that determines them, read back as memory-mapped tensors."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None

    @property
    def folder(self) -> Path:
        return self.root if self.root is not None else _process_tmp_root()

    @staticmethod
    def key(**parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def open(self, key: str) -> torch.Tensor | None:
        """The cached features ``[N, C, h, w]`` as a tensor over a memory map (rows are read from
        disk when indexed), or None when absent or unreadable (a torn or foreign file)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, mmap_mode="c")   # copy-on-write: torch may index it, the file stays as is
        except Exception as exc:  # noqa: BLE001
            log.warning("feature cache %s unreadable (%s): recomputing", path, exc)
            return None
        if arr.dtype != np.float16 or arr.ndim != 4:
            log.warning("feature cache %s holds %s %s, not float16 [N, C, h, w]: recomputing", path,
                        arr.dtype, arr.shape)
            return None
        return torch.from_numpy(arr)

    def writer(self, key: str, n: int) -> FeatureWriter:
        return FeatureWriter(self.path(key), n)

    def get_or_compute(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        got = self.open(key)
        if got is not None:
            return got
        feats = compute()
        w = self.writer(key, len(feats))
        w.write(feats)
        w.commit()
        return self.open(key)
