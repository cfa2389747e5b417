"""Stages 0-4 on Ray: per pool task, a filter task (read, resolution from the header, decode, quality)
feeds an idle person actor (detection, framing) that commits the task's decisions, its staged survivors and
its done marker. Tasks with a marker are skipped (resume). The per-task work is ``curation.work``.
"""
from __future__ import annotations

import os
from collections import deque

from humans.shared import storage
from humans.shared.log import get_logger, progress

from ..config import PipelineConfig
from ..detectors import detector_long_side
from ..raytools import PhaseClock, fit_actors, options, remote
from ..sources import PoolTask
from ..work import TaskCommitter, done_path, env_int, filter_task

log = get_logger("curation")
FAIL_AFTER_ENV = "HUMANS_CURATION_FAIL_AFTER_TASKS"  # fault injection: hard exit after N tasks (tests)


def run_filter_stages(tasks: list[PoolTask], cfg: PipelineConfig, out: str, total_cpus: float) -> dict:
    """Stages 0-4 over every pool task not done yet; returns ``{"ran": n, "skipped": n, "startup_s": s}``
    (``raytools.PhaseClock``)."""
    import ray

    pending = [(i, t) for i, t in enumerate(tasks) if not storage.is_file(done_path(out, t.task_id))]
    log.info("stages 0-4: %d pool tasks, %d already done (resume), %d to run",
             len(tasks), len(tasks) - len(pending), len(pending))
    if not pending:
        return {"ran": 0, "skipped": len(tasks)}
    clock = PhaseClock()
    person = cfg.stage("person")
    pres = person.resources if person else cfg.filter_resources
    n_act, act_cpus = fit_actors(pres.concurrency, pres.num_cpus, total_cpus, cfg.filter_resources.num_cpus)
    Committer = ray.remote(TaskCommitter).options(**options(act_cpus, pres.num_gpus))
    actors = [Committer.remote(cfg, out) for _ in range(n_act)]
    filt = remote(filter_task, cfg.filter_resources, scheduling_strategy="SPREAD")
    log.info("stages 0-4: %d person actor(s) x %.2f CPU, filter tasks x %.2f CPU, detector %s on %s px copies",
             n_act, act_cpus, cfg.filter_resources.num_cpus, ray.get(actors[0].detector_name.remote()),
             detector_long_side(person) if person else "-")
    fail_after = env_int(FAIL_AFTER_ENV)
    max_filters = 2 * max(n_act, cfg.filter_resources.concurrency)  # filter results made ahead of the actors
    queue = list(pending)

    def completions():
        """Filter tasks run ahead (bounded); each finished one goes to an idle person actor, one task per
        actor at a time. (Tasks used to be bound to actors round robin when submitted, so at the end of a
        run one actor could hold a queue while the other sat idle: benchmarks/raydata_bench.py.)"""
        filters: set = set()  # running filter tasks
        waiting: deque = deque()  # finished filter refs waiting for an idle actor
        commits: dict = {}  # actor call ref -> actor index
        idle = list(range(n_act))
        while queue or filters or waiting or commits:
            while queue and len(filters) + len(waiting) < max_filters:
                idx, task = queue.pop(0)
                filters.add(filt.remote(task, cfg, idx))
            while waiting and idle:
                a = idle.pop(0)
                commits[actors[a].process.remote(waiting.popleft())] = a
            ready, _ = ray.wait(list(filters) + list(commits), num_returns=1)
            for r in ready:
                if r in filters:
                    filters.remove(r)
                    waiting.append(r)  # the actor receives the ref: the result never visits the driver
                else:
                    idle.append(commits.pop(r))
                    yield ray.get(r)

    done = 0
    try:
        for _counts in progress(completions(), desc="stages 0-4", total=len(pending), unit="task"):
            done += 1
            clock.tick()
            if fail_after is not None and done >= fail_after:
                log.error("%s=%d: exiting hard after %d committed tasks (fault injection)",
                          FAIL_AFTER_ENV, fail_after, done)
                os._exit(75)
    finally:
        for a in actors:
            ray.kill(a)
    return {"ran": done, "skipped": len(tasks) - len(pending), "startup_s": clock.startup_s()}
