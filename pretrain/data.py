"""Streaming, resumable WebDataset input for pretraining.

Owns: resolving the shard list (a curated run directory, a brace pattern, a glob or a comma list),
splitting it over ranks and decoding workers, shuffling, decoding (``shared.imageio``), building
the multi-crop views (``pretrain.views``) and batching, with an exact, cheap data position.

Design (what makes resume exact):

* Each rank runs ``W`` decoding workers (``W = max(1, num_workers)``); the ``world * W`` *slots*
  each read an infinite stream: epoch ``e`` of slot ``g`` is its share of the shards in an order
  shuffled by ``(seed, e)`` -- whole shards when there are at least as many shards as slots
  (``shards[g::world*W]``, what ``wds.split_by_node`` + ``wds.split_by_worker`` do), otherwise
  every ``world*W``-th sample -- passed through a shuffle buffer seeded by ``(seed, g, e)`` and
  flushed at the end of the epoch. Views of the ``i``-th sample of an epoch are seeded by
  ``(seed, g, e, i)``. A slot's stream is thus a pure function of its position ``(e, i)``.
* Each batch carries the position of its slot after its last sample; the trainer keeps the
  position of every slot it actually consumed and saves it in checkpoints. A resumed slot skips
  whole epochs for free and replays at most one shuffle epoch of raw (undecoded) tar records.
* The DataLoader hands out batches from workers in round-robin order starting at worker 0, so
  worker ``w`` plays logical slot ``(w + batches_consumed) % W``: the batch after a resume comes
  from the same slot it would have come from without the interruption.

Changing ``world`` or ``num_workers`` on resume is allowed but cannot reproduce the same order;
the trainer warns. Undecodable images are skipped with a warning that names shard and key.
"""
from __future__ import annotations

import glob
import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import webdataset as wds
from braceexpand import braceexpand
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from humans.shared.log import get_logger
from humans.shared.schema import IMAGE_EXTENSIONS, MANIFEST_NAME
from humans.shared.shards import list_shards, read_manifest

from .config import DataConfig, ViewsConfig
from .views import make_views

log = get_logger("pretrain.data")


def mix_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any tuple of ints/strings (same in every process and run)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def resolve_shards(spec: str) -> list[str]:
    """Shard URLs from a run directory (its manifest), a brace pattern, a glob or a comma list of these
    (``runs/main/shards,runs/main/unlabelled``).

    Local paths must exist; the error names the first missing one.
    """
    if not spec:
        raise ValueError("no shards given: pass --shards (a curated run directory, "
                         "'OUT/humans-{000000..000099}.tar', a glob or a comma-separated list)")
    if "," in spec and "{" not in spec:      # a comma list of any of these, e.g. curated + synthetic folders
        return [u for part in spec.split(",") if part.strip() for u in resolve_shards(part.strip())]
    path = Path(spec)
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            names = [e["name"] for e in read_manifest(path).get("shards", [])]
            urls = [str(path / n) for n in names]
        else:
            urls = [str(p) for p in list_shards(path)]
        if not urls:
            raise ValueError(f"{spec}: directory holds no shards (no manifest entries, no *-NNNNNN.tar)")
    else:
        urls = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            for item in braceexpand(part):
                if not _is_remote(item) and any(ch in item for ch in "*?["):
                    found = sorted(glob.glob(item))
                    if not found:
                        raise ValueError(f"shard glob '{item}' matches no file")
                    urls.extend(found)
                else:
                    urls.append(item)
    missing = [u for u in urls if not _is_remote(u) and not os.path.isfile(u)]
    if missing:
        raise ValueError(f"shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if not urls:
        raise ValueError(f"no shards found for '{spec}'")
    return urls


def decode_image(data: bytes, source: str) -> torch.Tensor:
    """Bytes -> uint8 [3,H,W] (shared.imageio when present: EXIF, CMYK, 16-bit, bombs handled)."""
    try:
        from humans.shared.imageio import decode_rgb
    except ImportError:  # pragma: no cover - fallback while shared.imageio is absent
        import io

        import numpy as np
        from PIL import Image, ImageOps

        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    else:
        arr = decode_rgb(data, source)
    if not arr.flags.writeable:  # torch tensors must own writable memory
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _image_field(sample: dict[str, Any]) -> bytes | None:
    for ext in IMAGE_EXTENSIONS:
        if ext in sample:
            return sample[ext]
    return None


@dataclass
class SlotPosition:
    """Where a slot's stream stands: shuffle epoch and index of the next raw sample in it."""

    epoch: int = 0
    index: int = 0


@dataclass
class DataState:
    """The data position of one rank: batches consumed and every slot's position."""

    batches: int = 0
    slots: dict[int, SlotPosition] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"batches": self.batches,
                "slots": {int(s): [p.epoch, p.index] for s, p in self.slots.items()}}

    @classmethod
    def from_dict(cls, d: dict | None) -> "DataState":
        if not d:
            return cls()
        return cls(int(d.get("batches", 0)),
                   {int(s): SlotPosition(int(v[0]), int(v[1])) for s, v in d.get("slots", {}).items()})


def _log_and_continue(exn: Exception) -> bool:
    log.warning("shard read error, skipping the rest of the record: %s", exn)
    return True


class ViewStream(IterableDataset):
    """Batches of multi-crop views for one rank; see the module docstring for the slot design."""

    def __init__(self, urls: list[str], data: DataConfig, views: ViewsConfig, n_local: int, seed: int,
                 rank: int = 0, world: int = 1, state: DataState | None = None):
        super().__init__()
        self.urls = list(urls)
        self.data = data
        self.views = views
        self.n_local = n_local
        self.seed = seed
        self.rank = rank
        self.world = world
        self.n_workers = max(1, data.num_workers)
        self.state = state or DataState()

    # -- one slot ---------------------------------------------------------------------------
    def _epoch_shards(self, g: int, epoch: int) -> tuple[list[str], int | None]:
        order = list(self.urls)
        random.Random(mix_seed(self.seed, "shards", epoch)).shuffle(order)
        n_slots = self.world * self.n_workers
        if len(order) >= n_slots:
            return order[g::n_slots], None
        return order, n_slots  # too few shards: split by sample index instead

    def _raw_epoch(self, g: int, epoch: int) -> Iterator[dict[str, Any]]:
        shards, modulo = self._epoch_shards(g, epoch)
        raw = wds.tarfile_samples(iter([{"url": u} for u in shards]), handler=_log_and_continue)
        if modulo is not None:
            raw = (s for i, s in enumerate(raw) if i % modulo == g)
        bufsize = self.data.shuffle_buffer
        yield from wds.shuffle(bufsize=bufsize, initial=min(self.data.shuffle_initial, bufsize),
                               seed=mix_seed(self.seed, "buffer", g, epoch))(iter(raw))

    def slot_samples(self, g: int, start: SlotPosition) -> Iterator[tuple[torch.Tensor, torch.Tensor, str, SlotPosition]]:
        """Infinite stream of (global views, local views, key, position after) for global slot ``g``."""
        epoch, skip = start.epoch, start.index
        while True:
            produced = 0
            for idx, sample in enumerate(self._raw_epoch(g, epoch)):
                produced += 1
                if idx < skip:
                    continue
                key = sample.get("__key__", "?")
                source = f"{sample.get('__url__', '?')}#{key}"
                data = _image_field(sample)
                pos = SlotPosition(epoch, idx + 1)
                if data is None:
                    log.warning("%s: no image field (expected one of %s); skipped", source, IMAGE_EXTENSIONS)
                    continue
                try:
                    img = decode_image(data, source)
                except ValueError as exc:  # shared.imageio.ImageError is a ValueError
                    log.warning("%s: undecodable image skipped: %s", source, exc)
                    continue
                gv, lv = make_views(img, self.views, self.n_local, mix_seed(self.seed, "views", g, epoch, idx))
                yield gv, lv, key, pos
            if produced == 0:
                raise RuntimeError(f"data slot {g} of {self.world * self.n_workers} (rank {self.rank}) got "
                                   f"no samples in epoch {epoch} from {len(self.urls)} shard(s): fewer "
                                   "samples than ranks x workers, or unreadable shards")
            epoch, skip = epoch + 1, 0

    # -- batches --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        w = info.id if info is not None else 0
        if info is not None and info.num_workers != self.n_workers:
            raise RuntimeError(f"ViewStream built for {self.n_workers} workers runs in {info.num_workers}")
        slot = (w + self.state.batches) % self.n_workers
        g = self.rank * self.n_workers + slot
        start = self.state.slots.get(slot, SlotPosition())
        bs = self.data.batch_size
        buf: list[tuple] = []
        for item in self.slot_samples(g, start):
            buf.append(item)
            if len(buf) == bs:
                yield {"global": torch.stack([b[0] for b in buf]),   # [B, n_global, 3, G, G] uint8
                       "local": torch.stack([b[1] for b in buf]),    # [B, n_local, 3, L, L] uint8
                       "keys": [b[2] for b in buf],
                       "slot": slot, "pos": [buf[-1][3].epoch, buf[-1][3].index]}
                buf = []


class DataFeed:
    """The rank's batch iterator plus the data position of what was actually consumed."""

    def __init__(self, urls: list[str], data: DataConfig, views: ViewsConfig, n_local: int, seed: int,
                 rank: int = 0, world: int = 1, state: DataState | None = None, pin_memory: bool = False):
        self.state = DataState.from_dict(state.to_dict()) if state else DataState()
        self.dataset = ViewStream(urls, data, views, n_local, seed, rank, world,
                                  DataState.from_dict(self.state.to_dict()))  # workers get a frozen copy
        kwargs: dict[str, Any] = {}
        if data.num_workers > 0:
            kwargs = {"num_workers": data.num_workers, "prefetch_factor": data.prefetch_factor,
                      "multiprocessing_context": "fork" if os.name == "posix" else None}
        self.loader = DataLoader(self.dataset, batch_size=None, pin_memory=pin_memory, **kwargs)
        self._it: Iterator | None = None

    def __iter__(self) -> "DataFeed":
        return self

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._it = iter(self.loader)
        batch = next(self._it)
        self.state.batches += 1
        self.state.slots[int(batch["slot"])] = SlotPosition(*[int(v) for v in batch["pos"]])
        return batch

    def close(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
