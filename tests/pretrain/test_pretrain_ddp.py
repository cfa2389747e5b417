"""Two-process DDP (and FSDP2) on the CPU (gloo) give the same parameters as one process on the same
global batch."""
from __future__ import annotations

import itertools
import socket

import torch

from humans.pretrain.config import dump_config
from humans.pretrain.data import DataFeed, resolve_shards
from humans.pretrain.trainer import Trainer
from pretrain_testlib import ddp_worker, process_context, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_gloo_ddp_matches_single_process(fixture_shards, tmp_path):
    steps, global_batch = 3, 4
    overrides = {"views.global_size": 64, "views.local_size": 32, "optim.grad_clip": 1.0}
    single_cfg = tiny_config(fixture_shards, steps=steps, threads=1, **{"data.batch_size": global_batch}, **overrides)
    # real global batches from the shard pipeline, shared by both runs
    feed = DataFeed(resolve_shards(str(fixture_shards)), single_cfg.data, single_cfg.views, single_cfg.n_local,
                    single_cfg.seed)
    batches = [{"global": b["global"], "local": b["local"]} for b in itertools.islice(feed, steps)]
    feed.close()
    torch.save(batches, tmp_path / "batches.pt")

    ref = Trainer(single_cfg, tmp_path / "single", feed=list(batches))
    ref.run()

    ctx = process_context()
    for strategy in ("ddp", "fsdp"):
        ddp_cfg = single_cfg.model_copy(deep=True)
        ddp_cfg.data.batch_size = global_batch // 2
        ddp_cfg.distributed = strategy
        port = _free_port()
        args = (2, port, dump_config(ddp_cfg), str(tmp_path / "batches.pt"), str(tmp_path / strategy),
                str(tmp_path / f"{strategy}_result.pt"))
        procs = [ctx.Process(target=ddp_worker, args=(rank, *args)) for rank in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=300)
        assert [p.exitcode for p in procs] == [0, 0], strategy
        got = torch.load(tmp_path / f"{strategy}_result.pt", weights_only=True)

        worst = 0.0
        for part, module in (("model", ref.model), ("teacher", ref.teacher)):
            for k, v in module.state_dict().items():
                worst = max(worst, (got[part][k] - v).abs().max().item())
        print(f"{strategy}: largest parameter difference to one process {worst:.3g}")
        # the all-reduce sums gradients in another order than one process: < 1e-5 on the CI machine,
        # 5.5e-5 on another x86 CPU of the same kind; training moves the weights > 1e-3 (below)
        assert worst < 1e-4, f"{strategy}: largest parameter difference {worst:.3g}"
        gaps = [abs(a - b["loss"]) for a, b in zip(got["losses"], ref.history)]
        assert max(gaps) < 1e-4, gaps
    # and training moved the weights far more than that tolerance
    init = Trainer(single_cfg, tmp_path / "init", feed=[])
    moved = max((v - init.model.state_dict()[k]).abs().max().item() for k, v in ref.model.state_dict().items())
    assert moved > 1e-3
