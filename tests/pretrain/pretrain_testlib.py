"""Test helpers for pretrain: real-photo fixture shards and a tiny training config.

The fixture shards hold real photographs shipped by scikit-image (astronaut, camera, coffee,
chelsea, rocket, immunohistochemistry), cropped and resized, stored as JPEG with ``KEY.json``
metadata (``shared.schema.SampleMeta``) through ``shared.shards.ShardWriter``: the same layout the
curation pipeline writes. Models are small and randomly initialised (``sapiens2-tiny``).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import skimage.data
import skimage.transform

from humans.pretrain.config import TrainConfig, load_train_config
from humans.shared.imageio import encode_jpeg
from humans.shared.schema import SampleMeta
from humans.shared.shards import ShardWriter, write_manifest

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry")


def _photo(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3]


def make_fixture_shards(out_dir: str | Path, n_images: int = 16, per_shard: int = 8, size: tuple[int, int] = (128, 112),
                        seed: int = 0) -> Path:
    """Write ``n_images`` real-photo crops (JPEG + SampleMeta JSON) into shards and a manifest."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    photos = [_photo(n) for n in PHOTOS]
    infos = []
    writer = None
    for i in range(n_images):
        if i % per_shard == 0:
            if writer is not None:
                infos.append(writer.close())
            writer = ShardWriter(out_dir, "humans", i // per_shard)
        src = photos[i % len(photos)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = skimage.transform.resize(src[y:y + ch, x:x + cw], size, anti_aliasing=True, preserve_range=True)
        data = encode_jpeg(crop.astype(np.uint8), quality=90)
        key = f"img{i:05d}"
        meta = SampleMeta(key=key, source=f"skimage:{PHOTOS[i % len(PHOTOS)]}", width=size[1], height=size[0],
                          image_ext="jpg", image_sha256=hashlib.sha256(data).hexdigest())
        writer.add(key, {"jpg": data, "json": meta.model_dump(mode="json")})
    infos.append(writer.close())
    write_manifest(out_dir, infos)
    return out_dir


def tiny_config(shards: str | Path, **overrides) -> TrainConfig:
    """sapiens2-tiny (cell 32 px) with 96 px global views (9 cells), 64 px local views, small heads."""
    base = {
        "model": "sapiens2-tiny", "objective": "mae+cl", "steps": 10, "seed": 0, "threads": 2,
        "views": {"global_size": 96, "local_size": 64, "n_local": 2},
        "mae": {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
        "cl": {"out_dim": 64, "hidden_dim": 64, "bottleneck_dim": 32, "n_layers": 2},
        "optim": {"lr": 2e-3, "min_lr": 1e-4, "warmup_steps": 2, "weight_decay": 0.0},
        "data": {"shards": str(shards), "batch_size": 4, "num_workers": 0, "shuffle_buffer": 8,
                 "shuffle_initial": 4},
        "log_every": 1, "ckpt_every": 1000, "keep_ckpts": 0,
    }
    if overrides.get("views.local_size", 64) < 64:     # one 32 px cell: too small to mask
        base["mae"]["mask_local"] = False
    return load_train_config(None, _flatten(base) | overrides)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---- processes for the kill-and-resume and DDP tests --------------------------------------------
def process_context():
    """A forkserver multiprocessing context with the heavy imports preloaded once: children start in
    a fraction of a second instead of re-importing torch (and never inherit Ray/gRPC threads)."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "humans.pretrain.trainer", "humans.pretrain.cli", "pretrain_testlib"])
    return ctx


def run_cli(argv: list[str]) -> None:
    """Child process body: ``python -m pretrain ...`` without a new interpreter."""
    import os

    os.environ["HUMANS_NO_PROGRESS"] = "1"
    from humans.pretrain.cli import main

    raise SystemExit(main(argv))


def ddp_worker(rank: int, world: int, port: int, cfg_yaml: str, batches_file: str, out_dir: str,
               result_file: str) -> None:
    """One rank of a gloo DDP run on fixed global batches (each rank takes its contiguous slice)."""
    import os

    import torch
    import torch.distributed as dist
    import yaml

    from humans.pretrain.config import TrainConfig
    from humans.pretrain.trainer import Trainer
    from humans.shared.config import validate

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HUMANS_NO_PROGRESS="1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = validate(TrainConfig, yaml.safe_load(cfg_yaml))
        batches = torch.load(batches_file, weights_only=True)
        b = cfg.data.batch_size
        feed = [{"global": x["global"][rank * b:(rank + 1) * b], "local": x["local"][rank * b:(rank + 1) * b]}
                for x in batches]
        trainer = Trainer(cfg, out_dir, feed=feed)
        trainer.run()
        model, teacher, _optim = trainer._state_dicts()     # full (gathered) tensors under FSDP too
        if rank == 0:
            torch.save({"model": model, "teacher": teacher,
                        "losses": [h["loss"] for h in trainer.history]}, result_file)
    finally:
        dist.destroy_process_group()


def cli_rank(rank: int, world: int, port: int, argv: list[str]) -> None:
    """One rank of ``torchrun --nproc-per-node WORLD -m pretrain ...``: the environment torchrun sets,
    then the CLI in this process (gloo on the CPU)."""
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HUMANS_NO_PROGRESS="1")
    run_cli(argv)
