"""The teacher is exactly the EMA of the student: recompute it by hand from the student's weights."""
from __future__ import annotations

import torch

from humans.pretrain.ema import ema_update, tau_at
from humans.pretrain.trainer import Trainer
from pretrain_testlib import tiny_config


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _run_and_check(cfg, out_dir) -> None:
    student_after: list[dict[str, torch.Tensor]] = []
    trainer = Trainer(cfg, out_dir, callbacks=[lambda t: student_after.append(_snapshot(t.student_encoder))])
    start = _snapshot(trainer.teacher)                         # teacher starts as a copy of the student
    assert all(torch.equal(start[k], v) for k, v in _snapshot(trainer.student_encoder).items())
    trainer.run()
    trainer.close()
    assert len(student_after) == cfg.steps
    expected = start
    for k, student in enumerate(student_after):
        tau = tau_at(k, cfg.steps, cfg.cl.tau, cfg.cl.tau_schedule, cfg.cl.tau_end)
        expected = {n: e * tau + student[n] * (1.0 - tau) for n, e in expected.items()}
    teacher = _snapshot(trainer.teacher)
    assert teacher.keys() == expected.keys()
    for n in teacher:
        assert torch.equal(teacher[n], expected[n]), n          # bit for bit
    # and the teacher really moved away from both its start and the student
    name = next(n for n in teacher if "blocks.0" in n and teacher[n].ndim == 2)
    assert not torch.equal(teacher[name], start[name])
    assert not torch.equal(teacher[name], student_after[-1][name])


def test_teacher_is_exactly_the_ema_of_the_student(fixture_shards, tmp_path):
    cfg = tiny_config(fixture_shards, steps=3, threads=1, **{"cl.tau": 0.9,
                      "views.global_size": 64, "views.local_size": 32})
    _run_and_check(cfg, tmp_path / "run")


def test_cosine_tau_schedule_and_its_ema(fixture_shards, tmp_path):
    assert tau_at(0, 11, 0.992, "cosine", 1.0) == 0.992
    assert abs(tau_at(5, 11, 0.992, "cosine", 1.0) - 0.996) < 1e-12
    assert tau_at(10, 11, 0.992, "cosine", 1.0) == 1.0
    assert tau_at(7, 11, 0.992) == 0.992
    cfg = tiny_config(fixture_shards, steps=3, threads=1, **{"cl.tau": 0.5, "cl.tau_schedule": "cosine",
                      "views.global_size": 64, "views.local_size": 32})
    _run_and_check(cfg, tmp_path / "run")


def test_ema_update_formula_on_plain_modules():
    torch.manual_seed(0)
    s, t = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    w0 = t.weight.detach().clone()
    ema_update(t, s, 0.75)
    assert torch.equal(t.weight, w0 * 0.75 + s.weight * 0.25)
