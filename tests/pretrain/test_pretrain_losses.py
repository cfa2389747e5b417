"""Both losses fall over a few dozen steps on shards written by the real curation pipeline.

Overfitting a few images: one batch of 8 curated images, read and augmented by the real input
pipeline, trained on for 30 steps (fresh cell masks every step) with a tiny randomly initialised
model (sapiens2-tiny, 96 px global / 64 px local views). Two measurements: the training curve
(mean of the first vs the last 5 steps) and the losses on that batch before and after training.
"""
from __future__ import annotations

import math
import statistics

from humans.pretrain.data import DataFeed, resolve_shards
from humans.pretrain.trainer import Trainer
from pretrain_testlib import tiny_config

STEPS = 30


def test_mae_and_cl_losses_fall_on_curated_shards(curated_run_dir, tmp_path):
    cfg = tiny_config(curated_run_dir, steps=STEPS, threads=1, **{
        "data.batch_size": 8, "data.shuffle_buffer": 16, "optim.lr": 5e-3, "optim.min_lr": 1e-3,
        "optim.warmup_steps": 3, "optim.grad_clip": 0.0, "cl.teacher_temp": 0.04,
        "cl.center_momentum": 0.99, "views.global_scale": [0.5, 1.0], "mae.decoder_dim": 64,
        "mae.decoder_heads": 4})
    urls = resolve_shards(str(curated_run_dir))
    feed = DataFeed(urls, cfg.data, cfg.views, cfg.n_local, cfg.seed)
    batch = next(feed)
    feed.close()
    assert batch["global"].shape == (8, 2, 3, 96, 96) and batch["local"].shape == (8, 2, 3, 64, 64)

    trainer = Trainer(cfg, tmp_path / "run", feed=[batch] * STEPS)
    before = trainer.evaluate(batch)
    trainer.run()
    after = trainer.evaluate(batch)
    h = trainer.history
    curve = {k: (statistics.mean(x[k] for x in h[:5]), statistics.mean(x[k] for x in h[-5:]))
             for k in ("loss_mae", "loss_cl")}
    print("curve first5/last5:", curve, "\nbatch before:", before, "\nbatch after:", after)

    # measured on two humans-test curation runs (42 samples each, 2-core CPU): batch MAE x0.84 and
    # x0.75, CL x0.35 and x0.19; curve MAE x0.86 and x0.82, CL x0.34 and x0.26. Asserted with margin:
    assert after["loss_mae"] < 0.93 * before["loss_mae"]
    assert after["loss_cl"] < 0.6 * before["loss_cl"]
    assert curve["loss_mae"][1] < 0.95 * curve["loss_mae"][0]
    assert curve["loss_cl"][1] < 0.6 * curve["loss_cl"][0]
    assert after["teacher_entropy"] > 0.1                   # sharpened, not collapsed to one prototype
    assert all(math.isfinite(v) for x in h for v in x.values())
