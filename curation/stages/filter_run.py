"""Stages 0-4 on Ray: per pool task, a filter task (read, resolution from the header, decode, quality)
feeds a person actor (detection, framing) that commits the task's decisions, its staged survivors and
its done marker. Tasks with a marker are skipped (resume). The per-task work is ``curation.work``.
"""
from __future__ import annotations

import os

from humans.shared import storage
from humans.shared.log import get_logger, progress

from ..config import PipelineConfig
from ..raytools import fit_actors, options, remote
from ..sources import PoolTask
from ..work import TaskCommitter, done_path, env_int, filter_task

log = get_logger("curation")
FAIL_AFTER_ENV = "HUMANS_CURATION_FAIL_AFTER_TASKS"  # fault injection: hard exit after N tasks (tests)


def run_filter_stages(tasks: list[PoolTask], cfg: PipelineConfig, out: str, total_cpus: float) -> dict:
    """Stages 0-4 over every pool task not done yet; returns ``{"ran": n, "skipped": n}``."""
    import ray

    pending = [(i, t) for i, t in enumerate(tasks) if not storage.is_file(done_path(out, t.task_id))]
    log.info("stages 0-4: %d pool tasks, %d already done (resume), %d to run",
             len(tasks), len(tasks) - len(pending), len(pending))
    if not pending:
        return {"ran": 0, "skipped": len(tasks)}
    person = cfg.stage("person")
    pres = person.resources if person else cfg.filter_resources
    n_act, act_cpus = fit_actors(pres.concurrency, pres.num_cpus, total_cpus, cfg.filter_resources.num_cpus)
    Committer = ray.remote(TaskCommitter).options(**options(act_cpus, pres.num_gpus))
    actors = [Committer.remote(cfg, out) for _ in range(n_act)]
    filt = remote(filter_task, cfg.filter_resources, scheduling_strategy="SPREAD")
    log.info("stages 0-4: %d person actor(s) x %.2f CPU, filter tasks x %.2f CPU, detector %s",
             n_act, act_cpus, cfg.filter_resources.num_cpus, ray.get(actors[0].detector_name.remote()))
    fail_after = env_int(FAIL_AFTER_ENV)
    max_inflight = 2 * max(n_act, cfg.filter_resources.concurrency)
    queue = list(pending)

    def completions():
        inflight: dict = {}
        rr = 0
        while queue or inflight:
            while queue and len(inflight) < max_inflight:
                idx, task = queue.pop(0)
                ref = actors[rr % n_act].process.remote(filt.remote(task, cfg, idx))
                rr += 1
                inflight[ref] = task
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for r in ready:
                inflight.pop(r)
                yield ray.get(r)

    done = 0
    try:
        for _counts in progress(completions(), desc="stages 0-4", total=len(pending), unit="task"):
            done += 1
            if fail_after is not None and done >= fail_after:
                log.error("%s=%d: exiting hard after %d committed tasks (fault injection)",
                          FAIL_AFTER_ENV, fail_after, done)
                os._exit(75)
    finally:
        for a in actors:
            ray.kill(a)
    return {"ran": done, "skipped": len(tasks) - len(pending)}
