"""The pretraining loop: distributed setup, optimisation, EMA teacher, logging, checkpoints, resume.

One ``Trainer`` per process. With ``WORLD_SIZE > 1`` (torchrun) it joins the process group (NCCL on
CUDA, gloo on CPU) and wraps the model in DDP, or shards it with FSDP2 (``distributed: fsdp``).
Each step: draw the cell masks from a generator seeded by ``(seed, step)`` for the *global* batch
(so every sample gets the same mask whatever the number of ranks), run the teacher on the global
views, one student forward for both branches, backward, clip, AdamW step, cosine schedule step,
EMA update of the teacher, update of the centre. bf16 autocast on CUDA only.

A non-finite loss (checked on every rank, all-reduced) stops the run before the optimizer step with
``NonFiniteLossError`` naming the step and the last good checkpoint. Checkpoints hold what resume
needs to continue bit-for-bit: model, teacher, optimizer, scheduler, step, every rank's RNG state
and data position. Single-process and DDP runs write one file from rank 0; FSDP runs write a sharded
``torch.distributed.checkpoint`` directory, every rank its own shards, asynchronously (``ckpt_async``:
the state is copied to CPU memory, written by a background thread over a dedicated gloo group, and
made visible under its real name at the next save or at the end of the run). Either layout resumes
at any world size.
"""
from __future__ import annotations

import copy
import math
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from humans.shared.backbone import build_backbone
from humans.shared.config import ConfigError
from humans.shared.log import get_logger, progress_disabled
from humans.shared.shards import atomic_write_bytes

from .checkpoint import (CKPT_DIR, ShardedSave, ckpt_path, latest_checkpoint, load_checkpoint, load_sharded_into,
                         prune_checkpoints, remove_stale_temps, save_checkpoint)
from .config import TrainConfig, dump_config
from .data import DataFeed, DataState, SlotPosition, mix_seed, resolve_shards
from .cl import collapse_monitors, entropy, teacher_temperature
from .ema import ema_update, tau_at
from .masking import random_keep
from .metrics import MetricsLogger
from .model import PretrainModel, normalize
from .warm_start import warm_start

log = get_logger("pretrain.trainer")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the step and the last good checkpoint."""

    def __init__(self, step: int, values: dict[str, float], last_ckpt: Path | None):
        self.step = step
        self.values = values
        self.last_ckpt = last_ckpt
        parts = ", ".join(f"{k}={v}" for k, v in values.items())
        where = str(last_ckpt) if last_ckpt else "none (no checkpoint was saved before this step)"
        super().__init__(f"non-finite loss at step {step} ({parts}); stopped before the optimizer "
                         f"step, nothing saved. Last good checkpoint: {where}")


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (or already joined); pick the device."""
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("key 'device' has value 'cuda': no CUDA device is available (allowed: auto, cpu)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    return DistInfo(rank, world, local_rank, dev)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on biases, norms, tokens or the (normalised) prototypes."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or any(k in name for k in ("cls_token", "registers", "mask_token", "prototypes")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Trainer:
    """Build everything for ``cfg`` in ``out_dir``; ``run()`` trains to ``cfg.steps``.

    ``feed`` replaces the shard input with any iterable of batches shaped like ``DataFeed``'s (used
    by tests that give each rank a fixed slice of one global batch). ``callbacks`` are called as
    ``fn(trainer)`` after every step (after checkpointing).
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, resume: bool = False,
                 feed: Iterable[dict[str, Any]] | None = None,
                 callbacks: Iterable[Callable[["Trainer"], None]] = ()):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.callbacks = list(callbacks)
        urls = resolve_shards(cfg.data.shards) if feed is None else []   # bad input fails first
        self.dist = setup_distributed(cfg.device)
        self.device = self.dist.device
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.amp = self.device.type == "cuda" and cfg.precision in ("auto", "bf16")
        if cfg.precision == "bf16" and self.device.type != "cuda":
            log.warning("precision bf16 asked for but training on CPU: running fp32 (autocast is CUDA-only here)")

        # ---- model (same init on every rank: seeded before building) ----
        torch.manual_seed(cfg.seed)
        backbone = build_backbone(cfg.model, **cfg.model_overrides)
        cell = int(backbone.cell_size)
        for key in ("global_size", "local_size"):
            size = getattr(cfg.views, key)
            if size % cell:
                raise ConfigError(f"views: key '{key}' has value {size}: allowed a multiple of the "
                                  f"backbone cell size {cell} ({cfg.model})")
        if cfg.grad_checkpointing:
            backbone.set_grad_checkpointing(True)
        self.model = PretrainModel(cfg, backbone).to(self.device)
        self.teacher: nn.Module | None = None
        if cfg.use_cl:
            self.teacher = copy.deepcopy(self.model.encoder).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.n_cells_g = (cfg.views.global_size // cell) ** 2
        self.n_cells_l = (cfg.views.local_size // cell) ** 2
        if cfg.use_mae and cfg.mae.mask_local and cfg.n_local and self.n_cells_l < 2:
            raise ConfigError(f"views: key 'local_size' has value {cfg.views.local_size}: local views are "
                              f"masked (mae.mask_local) and need at least 2 masking units of {cell} px a "
                              f"side: allowed >= {2 * cell}, or set mae.mask_local false")
        self.ddp: nn.Module = self.model
        if self.dist.world > 1:
            self._wrap_distributed()

        # ---- optimisation ----
        gb = cfg.data.batch_size * self.dist.world
        lr = cfg.optim.lr * (gb / 256 if cfg.optim.scale_lr else 1.0)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.optim.weight_decay), lr=lr,
                                           betas=cfg.optim.betas)
        min_ratio = cfg.optim.min_lr / cfg.optim.lr
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.steps, cfg.optim.warmup_steps, min_ratio))

        # ---- state ----
        self.step = 0
        self.history: list[dict[str, float]] = []   # per-step losses (this process' run only)
        self.last_ckpt: Path | None = None
        self.init_summary: dict[str, Any] | None = None   # what ``init`` loaded (None: no warm start)
        self._pending: ShardedSave | None = None     # an asynchronous sharded save in flight
        self._ckpt_pg = None                         # gloo group of the sharded saves
        if self.dist.is_main:
            remove_stale_temps(self.out)              # partial saves of a killed earlier process
        if self.dist.world > 1:
            dist.barrier()
        data_state = DataState()
        found = latest_checkpoint(self.out) if (self.out / CKPT_DIR).is_dir() else None
        if found is not None and not resume:
            raise ConfigError(f"{self.out} already holds checkpoints (newest {found.name}): pass --resume "
                              "to continue that run, or choose another --out")
        if resume and found is None:
            log.info("--resume: no checkpoint in %s, starting a new run", self.out)
        if resume and found is not None:
            data_state = self._load(found)
            if cfg.init:
                log.info("init %s ignored: resuming this run's own checkpoint %s", cfg.init, found.name)
        elif cfg.init:
            if self.sharded:
                raise ConfigError("key 'init' is set under distributed fsdp on several ranks: warm start is "
                                  "supported for single-process and DDP runs")
            self.init_summary = warm_start(self.model, self.teacher, cfg.init)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.out / "config.yaml", dump_config(cfg).encode())
        # metrics.csv keeps only rows up to the step we start from (0: a fresh run starts it anew)
        self.metrics = MetricsLogger(self.out, self.step, enabled=self.dist.is_main)
        if feed is None:
            if self.dist.is_main:
                log.info("%d shard(s); %d rank(s) x %d worker(s); global batch %d", len(urls),
                         self.dist.world, max(1, cfg.data.num_workers), gb)
            feed = DataFeed(urls, cfg.data, cfg.views, cfg.n_local, cfg.seed, self.dist.rank, self.dist.world,
                            state=data_state, pin_memory=self.device.type == "cuda")
        self.feed = feed
        self._iter = iter(feed)

    # ------------------------------------------------------------------------------------------
    def _wrap_distributed(self) -> None:
        cfg = self.cfg
        if cfg.distributed == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DDP(self.model, device_ids=ids)
            return
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if self.amp else MixedPrecisionPolicy())
        for blk in self.model.encoder.backbone.blocks:
            fully_shard(blk, mp_policy=mp)
        fully_shard(self.model, mp_policy=mp)
        if self.teacher is not None:
            for blk in self.teacher.backbone.blocks:
                fully_shard(blk, mp_policy=mp)
            fully_shard(self.teacher, mp_policy=mp)

    @property
    def student_encoder(self) -> nn.Module:
        return self.model.encoder

    # ------------------------------------------------------------------------------------------
    def _masks(self, n_views: int, batch: int, n_cells: int, tag: str, step: int):
        """keep/mask for ``n_views`` view batches of this rank, drawn for the whole global batch."""
        g = torch.Generator().manual_seed(mix_seed(self.cfg.seed, "mask", tag, step))
        world, rank = self.dist.world, self.dist.rank
        keep, mask = random_keep(n_views * batch * world, n_cells, self.cfg.mae.mask_ratio, g)
        keep = keep.view(n_views, batch * world, -1)[:, rank * batch:(rank + 1) * batch].reshape(n_views * batch, -1)
        mask = mask.view(n_views, batch * world, -1)[:, rank * batch:(rank + 1) * batch].reshape(n_views * batch, -1)
        return keep.to(self.device), mask.to(self.device)

    def _forward(self, batch: dict[str, Any], mask_step: int) -> tuple[dict[str, torch.Tensor], Any, Any, float, Any]:
        """Teacher + student forward on ``batch`` with the masks of step ``mask_step``."""
        cfg, dev = self.cfg, self.device
        gv = batch["global"].to(dev, non_blocking=True)           # [B, V, 3, G, G] uint8
        b, n_views = gv.shape[:2]
        g = normalize(gv.transpose(0, 1).reshape(n_views * b, *gv.shape[2:]))
        local = None
        lv = batch.get("local")
        if cfg.use_cl and lv is not None and lv.shape[1] > 0:
            lv = lv.to(dev, non_blocking=True)
            local = normalize(lv.transpose(0, 1).reshape(lv.shape[1] * b, *lv.shape[2:]))
        keep_g = mask_g = keep_l = mask_l = None
        if cfg.use_mae:
            keep_g, mask_g = self._masks(n_views, b, self.n_cells_g, "global", mask_step)
            if local is not None and cfg.mae.mask_local:
                keep_l, mask_l = self._masks(local.shape[0] // b, b, self.n_cells_l, "local", mask_step)
        temp = teacher_temperature(self.step, cfg.cl.warmup_teacher_temp, cfg.cl.teacher_temp,
                                   cfg.cl.teacher_temp_warmup_steps)
        t_logits = t_probs_all = t_probs = t_patch = t_patch_probs = None
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.amp):
            if cfg.use_cl:
                with torch.no_grad():
                    if cfg.cl.patch_weight > 0:
                        t_logits, t_patch = self.teacher(g, patches=True)
                        if keep_g is not None:  # the teacher's tokens where the student sees its view
                            t_patch = torch.gather(t_patch, 1, keep_g.unsqueeze(-1).expand(-1, -1, t_patch.shape[-1]))
                        t_patch = t_patch.float()
                        t_patch_probs = self.model.patch_loss.teacher_probs(
                            t_patch.flatten(0, 1), temp).view_as(t_patch)
                    else:
                        t_logits = self.teacher(g)
                    t_logits = t_logits.float()
                t_probs_all = self.model.cl_loss.teacher_probs(t_logits, temp)
                t_probs = list(t_probs_all.chunk(n_views))
            out = self.ddp(g, local, keep_g, mask_g, keep_l, mask_l, t_probs, t_patch_probs)
        return out, t_logits, t_probs_all, temp, t_patch

    def _reduce(self, out: dict[str, torch.Tensor]) -> dict[str, float]:
        names = ["loss"] + [k for k in ("loss_mae", "loss_cl", "loss_cl_patch", "loss_koleo") if k in out]
        vals = torch.stack([out[k].detach().float() for k in names])
        if self.dist.world > 1:
            dist.all_reduce(vals)
            vals /= self.dist.world
        return dict(zip(names, vals.tolist()))

    @torch.no_grad()
    def evaluate(self, batch: dict[str, Any], mask_step: int = 0) -> dict[str, float]:
        """Losses of the current student/teacher on ``batch`` (masks of ``mask_step``), no update."""
        out, _t, probs, _temp, _tp = self._forward(batch, mask_step)
        values = self._reduce(out)
        if probs is not None:
            values["teacher_entropy"] = entropy(probs)
        return values

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimisation step on ``batch``; returns the (rank-averaged) losses and statistics."""
        cfg = self.cfg
        out, t_logits, t_probs_all, temp, t_patch = self._forward(batch, self.step)
        loss = out["loss"]
        values = self._reduce(out)
        if not all(math.isfinite(v) for v in values.values()):
            raise NonFiniteLossError(self.step + 1, values, self.last_ckpt)

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        else:
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        gn = gn.full_tensor() if hasattr(gn, "full_tensor") else gn
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        tau = tau_at(self.step, cfg.steps, cfg.cl.tau, cfg.cl.tau_schedule, cfg.cl.tau_end)
        if cfg.use_cl:
            for m in (self.teacher, self.model):      # FSDP2: EMA on the sharded parameters
                if hasattr(m, "reshard"):
                    m.reshard()
            ema_update(self.teacher, self.student_encoder, tau)
            self.model.cl_loss.update_center(t_logits)
            if t_patch is not None:
                self.model.patch_loss.update_center(t_patch.flatten(0, 1))
            values["teacher_entropy"] = entropy(t_probs_all)
            values.update(collapse_monitors(t_probs_all, t_logits))
            values["teacher_temp"] = temp
            values["tau"] = tau
        values["lr"] = lr
        values["grad_norm"] = float(gn)
        self.step += 1
        return values

    # ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train until ``cfg.steps``; returns a summary (final losses, images/s, last checkpoint)."""
        cfg = self.cfg
        bar = None
        if self.dist.is_main and not progress_disabled():
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="pretrain", unit="step", dynamic_ncols=True)
        gb = cfg.data.batch_size * self.dist.world
        t_start = time.perf_counter()
        steps_done = 0
        data_s = step_s = 0.0
        values: dict[str, float] = {}
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                try:
                    batch = next(self._iter)
                except StopIteration:
                    raise RuntimeError(f"the input ran out of batches at step {self.step} of {cfg.steps}") from None
                t1 = time.perf_counter()
                values = self.train_step(batch)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                t2 = time.perf_counter()
                data_s += t1 - t0
                step_s += t2 - t0
                steps_done += 1
                self.history.append({"step": self.step, **values})
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row = {"step": self.step, **values, "images_per_s": gb * steps_done / max(step_s, 1e-9),
                           "data_frac": data_s / max(step_s, 1e-9), "step_s": step_s / max(steps_done, 1),
                           "peak_mem_mb": _peak_mem_mb(self.device)}
                    self.metrics.write(row)
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                    self.save()
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()
                                     if k in ("loss", "loss_mae", "loss_cl", "lr", "teacher_entropy")},
                                    refresh=False)
                    bar.update(1)
                for fn in self.callbacks:
                    fn(self)
        finally:
            if bar is not None:
                bar.close()
            self.metrics.close()
        self.wait_for_checkpoint()
        elapsed = time.perf_counter() - t_start
        return {"step": self.step, "last": values, "last_checkpoint": str(self.last_ckpt) if self.last_ckpt else None,
                "images_per_s": gb * steps_done / max(step_s, 1e-9), "data_frac": data_s / max(step_s, 1e-9),
                "seconds": elapsed}

    def close(self) -> None:
        self.wait_for_checkpoint()
        close = getattr(self.feed, "close", None)
        if close is not None:
            close()

    # ------------------------------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _data_state(self) -> dict | None:
        st = getattr(self.feed, "state", None)
        return st.to_dict() if isinstance(st, DataState) else None

    def _gather(self, obj: Any) -> list[Any]:
        if self.dist.world == 1:
            return [obj]
        out: list[Any] = [None] * self.dist.world
        dist.all_gather_object(out, obj)
        return out

    @property
    def sharded(self) -> bool:
        """FSDP on several ranks: checkpoints are DCP directories, each rank writing its shards."""
        return self.cfg.distributed == "fsdp" and self.dist.world > 1

    def _state_dicts(self, full: bool = True) -> tuple[dict, dict | None, dict]:
        """Model, teacher and optimizer state. Under FSDP: gathered full tensors (``full``) or this
        rank's shards (DTensors, for DCP); otherwise plain CPU tensors (``full``) or the live ones
        (optimizer keyed by parameter name, the layout DCP reshards)."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        if not full:
            model = get_model_state_dict(self.model)
            teacher = get_model_state_dict(self.teacher) if self.teacher is not None else None
            return model, teacher, get_optimizer_state_dict(self.model, self.optimizer)
        if self.sharded:
            opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
            model = get_model_state_dict(self.model, options=opts)
            teacher = get_model_state_dict(self.teacher, options=opts) if self.teacher is not None else None
            optim = get_optimizer_state_dict(self.model, self.optimizer, options=opts)
            return model, teacher, optim
        model = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        teacher = ({k: v.detach().cpu() for k, v in self.teacher.state_dict().items()}
                   if self.teacher is not None else None)
        return model, teacher, self.optimizer.state_dict()

    def _meta(self, rng: list, data: list) -> dict[str, Any]:
        return {"step": self.step, "config": dump_config(self.cfg), "scheduler": self.scheduler.state_dict(),
                "rng": rng, "data": data, "world_size": self.dist.world,
                "num_workers": self.cfg.data.num_workers}

    def wait_for_checkpoint(self) -> Path | None:
        """Complete an asynchronous sharded save in flight (collective); returns its path."""
        if self._pending is None:
            return None
        path = self._pending.finish()
        self._pending = None
        if self.dist.is_main:
            prune_checkpoints(self.out, self.cfg.keep_ckpts)
        return path

    def save(self) -> Path:
        """Write a checkpoint of the current step (collective: every rank calls it)."""
        rng = self._gather(self._rng_state())
        data = self._gather(self._data_state())
        if self.sharded:
            self.wait_for_checkpoint()
            if self._ckpt_pg is None:
                self._ckpt_pg = dist.new_group(backend="gloo")
            model, teacher, optim = self._state_dicts(full=False)
            tensors = {"model": model, "optimizer": optim} | ({"teacher": teacher} if teacher is not None else {})
            path = ckpt_path(self.out, self.step, sharded=True)
            self._pending = ShardedSave(tensors, self._meta(rng, data), path, self.dist.is_main,
                                        process_group=self._ckpt_pg, use_async=self.cfg.ckpt_async)
            if not self.cfg.ckpt_async:
                self.wait_for_checkpoint()
            self.last_ckpt = path
            if self.dist.is_main:
                self.metrics.flush()
                self.metrics.plot(min_interval_s=60)
            return path
        model, teacher, optim = self._state_dicts()
        path = ckpt_path(self.out, self.step)
        if self.dist.is_main:
            save_checkpoint({**self._meta(rng, data), "model": model, "teacher": teacher, "optimizer": optim},
                            path)
            prune_checkpoints(self.out, self.cfg.keep_ckpts)
            self.metrics.flush()
            self.metrics.plot(min_interval_s=60)
        if self.dist.world > 1:
            dist.barrier()
        self.last_ckpt = path
        return path

    def _load_sharded(self, path: Path) -> dict[str, Any]:
        """Read a DCP checkpoint into this run's (sharded or whole) model, teacher and optimizer."""
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        model, teacher, optim = self._state_dicts(full=False)
        tensors = {"model": model, "optimizer": optim} | ({"teacher": teacher} if teacher is not None else {})
        state = load_sharded_into(path, tensors)
        set_model_state_dict(self.model, tensors["model"])
        if self.teacher is not None:
            set_model_state_dict(self.teacher, tensors["teacher"])
        set_optimizer_state_dict(self.model, self.optimizer, tensors["optimizer"])
        return state

    def _load(self, path: Path) -> DataState:
        rank, world = self.dist.rank, self.dist.world
        if path.is_dir():                                   # DCP: resharded to this run's layout
            state = self._load_sharded(path)
        elif self.sharded:                                  # a whole-file checkpoint into FSDP
            state = load_checkpoint(path)
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                                 set_optimizer_state_dict)

            opts = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.model, state["model"], options=opts)
            if self.teacher is not None:
                set_model_state_dict(self.teacher, state["teacher"], options=opts)
            set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], options=opts)
        else:
            state = load_checkpoint(path)
            self.model.load_state_dict(state["model"])
            if self.teacher is not None:
                self.teacher.load_state_dict(state["teacher"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.last_ckpt = path
        same_layout = (int(state.get("world_size", 1)) == world
                       and int(state.get("num_workers", -1)) == self.cfg.data.num_workers)
        rng = state.get("rng") or []
        data = state.get("data") or []
        if same_layout and rank < len(rng):
            torch.set_rng_state(rng[rank]["torch"])
            random.setstate(_as_tuple(rng[rank]["python"]))
            if self.device.type == "cuda" and "cuda" in rng[rank]:
                torch.cuda.set_rng_state(rng[rank]["cuda"], self.device)
        if same_layout and rank < len(data) and data[rank]:
            ds = DataState.from_dict(data[rank])
        else:
            # another layout: no slot can continue its stream; start every slot on a fresh shuffle
            # epoch after any epoch already seen, so the resumed run does not replay the start
            seen = [p.epoch for d in data if d for p in DataState.from_dict(d).slots.values()]
            fresh = SlotPosition(max(seen, default=-1) + 1, 0)
            ds = DataState(self.step, {s: fresh for s in range(max(1, self.cfg.data.num_workers))})
            log.warning("resuming %s with %d rank(s) x %d worker(s) (saved with %s x %s): the data order "
                        "and RNG streams cannot continue exactly; every data slot starts shuffle epoch %d",
                        path, world, self.cfg.data.num_workers, state.get("world_size"),
                        state.get("num_workers"), fresh.epoch)
        if self.dist.is_main:
            log.info("resumed from %s at step %d", path, self.step)
        return ds


def _as_tuple(x: Any) -> Any:
    """random.setstate needs tuples; a checkpoint round trip may give lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
