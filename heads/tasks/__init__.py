"""The task registry: one module per task under ``heads/tasks/``, each defining ``SPEC`` (a
``heads.tasks.base.TaskSpec``: output channels, target encoding, loss, metric, evaluation,
visualisation and export form). Every consumer in ``heads/`` looks a task up with ``get_task`` instead
of branching on its name.

Adding a task: write ``heads/tasks/<name>.py`` with its ``SPEC`` and append ``<name>`` to ``TASKS``
(docs/ARCHITECTURE.md). The spec modules are imported on first use, so ``TASKS`` costs nothing to read
(the command line's ``--help`` does not import torch).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from humans.heads.tasks.base import TaskSpec

TASKS = ("pose", "seg", "pointmap", "normal", "albedo")

_LOADED: dict[str, "TaskSpec"] = {}


def get_task(name: str) -> "TaskSpec":
    """The spec of task ``name`` (ValueError naming the allowed tasks otherwise)."""
    spec = _LOADED.get(name)
    if spec is None:
        if name not in TASKS:
            raise ValueError(f"task {name!r}: allowed {', '.join(TASKS)}")
        spec = importlib.import_module(f"{__name__}.{name}").SPEC
        if spec.name != name:
            raise AssertionError(f"heads/tasks/{name}.py declares a spec named {spec.name!r}")
        _LOADED[name] = spec
    return spec


__all__ = ["TASKS", "get_task"]
