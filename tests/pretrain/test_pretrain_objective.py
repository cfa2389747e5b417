"""Objective details of the seed: per-patch masking of every view at the ratio, and the CL branch's
teacher-temperature warm-up, Sinkhorn-Knopp centring and KoLeo regulariser on toy cases whose answer
is known."""
from __future__ import annotations

import math

import torch

from humans.pretrain.config import MaeConfig
from humans.pretrain.cl import ClLoss, koleo_loss, sinkhorn_knopp, teacher_temperature
from humans.pretrain.trainer import Trainer
from pretrain_testlib import tiny_config

PLAIN = {"model_overrides": {"hierarchical": False}}    # sapiens2-tiny as a plain ViT: cell = patch


def _batch(b: int, g: int, l_size: int, n_local: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    return {"global": torch.randint(0, 256, (b, 2, 3, g, g), dtype=torch.uint8, generator=gen),
            "local": torch.randint(0, 256, (b, n_local, 3, l_size, l_size), dtype=torch.uint8, generator=gen)}


def test_every_view_masked_per_patch_at_the_ratio(fixture_shards, tmp_path):
    assert MaeConfig().mask_local and MaeConfig().mask_ratio == 0.75    # defaults: every view masked
    cfg = tiny_config(fixture_shards, threads=1, **PLAIN, **{"views.global_size": 64, "views.local_size": 32,
                                                             "mae.mask_local": True})
    trainer = Trainer(cfg, tmp_path / "run", feed=[])
    assert trainer.model.cell == 16                                   # masking unit = one patch
    seen = {}
    forward = trainer.ddp

    def spy(g, local, keep_g, mask_g, keep_l, mask_l, t_probs, t_patch_probs=None):
        seen.update(mask_g=mask_g, mask_l=mask_l, keep_g=keep_g)
        return forward(g, local, keep_g, mask_g, keep_l, mask_l, t_probs, t_patch_probs)
    trainer.ddp = spy
    out, *_ = trainer._forward(_batch(4, 64, 32, 2), 0)
    trainer.close()
    # global views: 4x4 = 16 patches, 12 hidden; local views: 2x2 = 4 patches, 3 hidden
    assert seen["mask_g"].shape == (2 * 4, 16) and seen["mask_g"].sum(1).tolist() == [12] * 8
    assert seen["mask_l"].shape == (2 * 4, 4) and seen["mask_l"].sum(1).tolist() == [3] * 8
    assert len({tuple(k.tolist()) for k in seen["keep_g"]}) > 1       # drawn per sample and view
    assert math.isfinite(out["loss_mae"].item())


def test_teacher_temperature_warms_up_linearly():
    temps = [teacher_temperature(s, 0.04, 0.07, 10) for s in (0, 5, 10, 50)]
    assert [round(t, 6) for t in temps] == [0.04, 0.055, 0.07, 0.07]
    assert teacher_temperature(0, 0.04, 0.07, 0) == 0.07              # no warm-up


def test_sinkhorn_gives_uniform_marginals_where_softmax_collapses():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 8, generator=g)
    logits[:, 0] += 3.0                       # every sample prefers prototype 0
    soft = ClLoss(8).teacher_probs(logits, 0.1)          # EMA centring (zero centre): softmax
    assert soft.sum(0)[0] > 0.8 * 32                       # nearly all mass on prototype 0
    q = sinkhorn_knopp(logits, 0.1, iters=200)
    torch.testing.assert_close(q.sum(1), torch.ones(32))                       # rows: distributions
    torch.testing.assert_close(q.sum(0), torch.full((8,), 32 / 8), atol=1e-3, rtol=0)  # columns: B/K
    q3 = ClLoss(8, centering="sinkhorn", sinkhorn_iters=3).teacher_probs(logits, 0.1)
    torch.testing.assert_close(q3.sum(1), torch.ones(32))
    assert (q3.sum(0) - 4).abs().max() < 0.25 * (soft.sum(0) - 4).abs().max()


def test_koleo_known_value_and_rises_when_features_collapse():
    eye = torch.eye(4)                          # orthonormal: nearest neighbour at sqrt(2)
    assert abs(koleo_loss(eye).item() + math.log(math.sqrt(2))) < 1e-6
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(16, 8, generator=g)
    collapsed = torch.ones(16, 8) + 1e-3 * torch.randn(16, 8, generator=g)
    assert koleo_loss(collapsed).item() > koleo_loss(spread).item() + 3.0
    x = spread.clone().requires_grad_(True)     # the gradient pushes neighbours apart
    koleo_loss(x).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sinkhorn_and_koleo_in_a_training_run(fixture_shards, tmp_path):
    cfg = tiny_config(fixture_shards, steps=2, threads=1, **{
        "views.global_size": 64, "views.local_size": 32, "cl.centering": "sinkhorn",
        "cl.koleo_weight": 0.1, "cl.teacher_temp_warmup_steps": 2})
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run()
    trainer.close()
    h = trainer.history
    assert all(math.isfinite(x["loss_koleo"]) for x in h) and h[0]["teacher_temp"] == 0.04
    assert torch.count_nonzero(trainer.model.cl_loss.center) == 0    # Sinkhorn keeps no centre


def test_cl_run_teacher_entropy_falls_below_log_k_without_collapse(fixture_shards, tmp_path):
    """A short self-distillation run of the (randomly initialised) study-s8 model: the collapse
    monitors are logged every step, the teacher's entropy ends well below log K (it is not uniform)
    while its batch-mean output stays spread over the prototypes (KL to uniform far from log K)."""
    from humans.pretrain.cl import collapse_monitors

    k = 64
    probs = torch.full((8, k), 1.0 / k)
    m = collapse_monitors(probs, torch.randn(8, k))
    assert abs(m["teacher_kl_uniform"]) < 1e-5
    one_hot = torch.nn.functional.one_hot(torch.zeros(8, dtype=torch.long), k).float()
    assert abs(collapse_monitors(one_hot, torch.ones(8, k))["teacher_kl_uniform"] - math.log(k)) < 1e-4
    assert collapse_monitors(one_hot, torch.ones(8, k))["teacher_feature_std"] < 1e-4

    cfg = tiny_config(fixture_shards, steps=25, threads=1, **{
        "model": "study-s8", "objective": "cl", "views.global_size": 32, "views.local_size": 16,
        "cl.out_dim": k, "data.batch_size": 8, "optim.warmup_steps": 3})
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run()
    trainer.close()
    h = trainer.history
    assert all({"teacher_entropy", "teacher_kl_uniform", "teacher_feature_std"} <= set(x) for x in h)
    assert h[-1]["teacher_entropy"] < math.log(k) - 0.5
    assert h[-1]["teacher_kl_uniform"] < 0.5 * math.log(k) and h[-1]["teacher_feature_std"] > 0.05
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "teacher_kl_uniform" in header and "teacher_feature_std" in header


def test_patch_distillation_matches_the_teacher_at_the_students_visible_tokens(fixture_shards, tmp_path):
    """``cl.patch_weight`` > 0: the teacher's patch distributions are taken at exactly the positions the
    masked student sees (a plain ViT: its visible tokens are the whole view's tokens at ``keep``), the
    term enters the loss with its weight, training lowers it against fixed targets; weight 0 adds nothing."""
    cfg = tiny_config(fixture_shards, threads=1, steps=12, **PLAIN, **{
        "views.global_size": 64, "views.local_size": 32, "cl.patch_weight": 0.5})
    trainer = Trainer(cfg, tmp_path / "run", feed=[])
    batch = _batch(4, 64, 32, 2)
    seen = {}
    forward = trainer.ddp

    def spy(g, local, keep_g, mask_g, keep_l, mask_l, t_probs, t_patch_probs=None):
        seen.update(g=g, keep_g=keep_g, t_patch_probs=t_patch_probs)
        return forward(g, local, keep_g, mask_g, keep_l, mask_l, t_probs, t_patch_probs)
    trainer.ddp = spy
    out, *_ = trainer._forward(batch, 0)
    trainer.ddp = forward
    with torch.no_grad():  # recompute by hand: the teacher on the whole views, then the kept positions
        _, t_all = trainer.teacher(seen["g"], patches=True)
        idx = seen["keep_g"]
        want = torch.stack([t_all[i, idx[i]] for i in range(len(idx))]).float()
        want = torch.softmax((want - trainer.model.patch_loss.center) / cfg.cl.teacher_temp, dim=-1)
    assert seen["t_patch_probs"].shape == (2 * 4, 4, 64)        # 4x4 patches per view, 75 % masked
    torch.testing.assert_close(seen["t_patch_probs"], want)
    assert torch.isclose(out["loss"], out["loss_mae"] + cfg.lam * out["loss_cl"] + 0.5 * out["loss_cl_patch"])
    trainer.close()
    # with the patch term alone and a teacher that stays put (tau 1, fixed centre), the targets are
    # fixed: training lowers the term
    alone = tiny_config(fixture_shards, threads=1, steps=20, objective="cl", lam=0.0, **PLAIN, **{
        "views.global_size": 64, "views.local_size": 32, "cl.patch_weight": 1.0, "cl.tau": 1.0,
        "cl.center_momentum": 1.0})
    trainer = Trainer(alone, tmp_path / "alone", feed=[])
    first = trainer.evaluate(batch)["loss_cl_patch"]
    for _ in range(20):
        trainer.train_step(batch)
    assert trainer.evaluate(batch)["loss_cl_patch"] < first - 0.03
    trainer.close()

    plain = tiny_config(fixture_shards, threads=1, **PLAIN, **{"views.global_size": 64, "views.local_size": 32})
    t0 = Trainer(plain, tmp_path / "run0", feed=[])
    assert not hasattr(t0.model, "patch_loss") and "loss_cl_patch" not in t0._forward(batch, 0)[0]
    t0.close()
