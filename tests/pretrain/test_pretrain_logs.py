"""A pretraining run writes TensorBoard event files (read back with tensorboard's own reader, equal
to metrics.csv) and PNG plots of its losses, learning rate and collapse monitors."""
from __future__ import annotations

import csv
import math

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from humans.pretrain.trainer import Trainer
from pretrain_testlib import tiny_config


def test_tensorboard_events_and_plots(fixture_shards, tmp_path):
    cfg = tiny_config(fixture_shards, steps=3, threads=1, **{"views.global_size": 64, "views.local_size": 32})
    run = tmp_path / "run"
    trainer = Trainer(cfg, run)
    trainer.run()
    trainer.close()

    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"pretrain/loss", "pretrain/loss_mae", "pretrain/loss_cl", "pretrain/lr", "pretrain/teacher_entropy",
            "pretrain/images_per_s"} <= tags
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for name in ("loss", "lr", "teacher_entropy"):
        got = acc.Scalars(f"pretrain/{name}")
        assert [e.step for e in got] == [1, 2, 3]
        # metrics.csv holds 6 significant digits, the events float32
        assert all(math.isclose(e.value, float(r[name]), rel_tol=1e-5) for e, r in zip(got, rows)), \
            (name, [e.value for e in got], [r[name] for r in rows])

    for name in ("loss.png", "lr.png", "collapse.png", "throughput.png"):
        with Image.open(run / "plots" / name) as im:
            assert im.format == "PNG" and im.size[0] >= 400, name
