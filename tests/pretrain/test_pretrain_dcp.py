"""Sharded (torch.distributed.checkpoint) checkpoints of FSDP runs: two CPU ranks (gloo) write their
own shards asynchronously; a run SIGKILLed after a checkpoint and resumed gives the same losses as an
uninterrupted run; the world-size-2 checkpoint resumes in one process and exports to safetensors."""
from __future__ import annotations

import csv
import socket
import time
from pathlib import Path

import torch

from humans.pretrain.checkpoint import META_FILE, ckpt_path, latest_checkpoint, load_checkpoint, step_of
from humans.pretrain.config import dump_config, load_train_config
from humans.pretrain.export import export_backbone
from humans.pretrain.trainer import Trainer
from pretrain_testlib import cli_rank, process_context, tiny_config
from humans.shared.backbone import load_backbone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run: Path) -> dict[int, tuple[str, str, str]]:
    rows = csv.DictReader((run / "metrics.csv").open())
    return {int(r["step"]): (r["loss"], r["loss_mae"], r["loss_cl"]) for r in rows}


def _start(ctx, argv: list[str]):
    port = _free_port()
    procs = [ctx.Process(target=cli_rank, args=(rank, 2, port, argv)) for rank in range(2)]
    for p in procs:
        p.start()
    return procs


def _join(procs, what: str) -> None:
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0], what


def test_fsdp_sharded_checkpoint_kill_resume_and_reshard(fixture_shards, tmp_path):
    steps = 4
    cfg = tiny_config(fixture_shards, steps=steps, threads=1, ckpt_every=1, distributed="fsdp", **{
        "views.global_size": 64, "views.local_size": 32, "data.batch_size": 2})
    assert cfg.ckpt_async
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(dump_config(cfg))
    ctx = process_context()

    # uninterrupted reference at world size 2
    ref = tmp_path / "ref"
    _join(_start(ctx, ["train", "--config", str(cfg_file), "--out", str(ref)]), "reference run")
    final = ckpt_path(ref, steps, sharded=True)
    assert final.is_dir() and (final / META_FILE).is_file()
    shards = sorted(p.name for p in final.glob("*.distcp"))
    assert len(shards) == 2, shards                       # one file of shards per rank
    assert not list((ref / "ckpt").glob("*.tmp*"))

    # the same run SIGKILLed (both ranks) once the step-2 checkpoint is complete (the step-3 save,
    # asynchronous, is then in flight or done)
    killed = tmp_path / "killed"
    procs = _start(ctx, ["train", "--config", str(cfg_file), "--out", str(killed)])
    deadline = time.time() + 180
    while not (ckpt_path(killed, 2, sharded=True) / META_FILE).exists():
        assert all(p.is_alive() for p in procs), [p.exitcode for p in procs]
        assert time.time() < deadline, "no sharded checkpoint within 180 s"
        time.sleep(0.01)
    for p in procs:
        p.kill()
    for p in procs:
        p.join()
    resumed_from = latest_checkpoint(killed)
    assert resumed_from is not None and step_of(resumed_from) < steps
    _join(_start(ctx, ["train", "--out", str(killed), "--resume"]), "resumed run")
    assert not list((killed / "ckpt").glob("*.tmp*"))     # a save cut by the kill is cleaned up
    assert _losses(killed) == _losses(ref) and len(_losses(ref)) == steps
    a, b = load_checkpoint(final), load_checkpoint(ckpt_path(killed, steps, sharded=True))
    for part in ("model", "teacher"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"

    # reshard: resume the world-size-2 checkpoint of step 2 in one process
    one = tmp_path / "one"
    (one / "ckpt").mkdir(parents=True)
    src = ckpt_path(ref, 2, sharded=True)
    dst = ckpt_path(one, 2, sharded=True)
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    one_cfg = load_train_config(cfg_file, {"data.batch_size": 4})
    trainer = Trainer(one_cfg, one, resume=True)
    assert trainer.step == 2
    full = load_checkpoint(src)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, full["model"][k]), k
    for k, v in trainer.teacher.state_dict().items():
        assert torch.equal(v, full["teacher"][k]), k
    moments = trainer.optimizer.state_dict()["state"]
    assert len(moments) == len(full["optimizer"]["state"]) and all("exp_avg" in m for m in moments.values())
    trainer.run()
    trainer.close()
    assert trainer.step == steps and all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.history)
    assert ckpt_path(one, steps).is_file()                # one process writes the simple file

    # export of a sharded checkpoint to one safetensors file is its own, explicit step
    out = export_backbone(final, tmp_path / "backbone.safetensors")
    exported = load_backbone(out).state_dict()
    teacher = {k[len("backbone."):]: v for k, v in a["teacher"].items() if k.startswith("backbone.")}
    assert exported.keys() == teacher.keys()
    for k, v in exported.items():
        assert torch.equal(v, teacher[k]), k
