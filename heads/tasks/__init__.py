"""The task registry: one module per task under ``heads/tasks/``, each defining ``SPEC`` (a
``heads.tasks.base.TaskSpec``: output channels, target encoding, loss, metric, evaluation,
visualisation and export form). Every consumer in ``heads/`` looks a task up with ``get_task`` instead
of branching on its name.

Adding a task: write ``heads/tasks/<name>.py`` with its ``SPEC`` and add one line to ``REGISTRY``
(docs/ARCHITECTURE.md). The spec modules are imported on first use, so the registry costs nothing to
read (the command line's ``--help`` does not import torch).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from humans.heads.tasks.base import TaskSpec

# task name -> what its output is (for --help); the order is the order of tables and runs
REGISTRY = {
    "pose": "308 keypoint heatmaps",
    "seg": "29 body parts",
    "pointmap": "X, Y, Z per pixel",
    "normal": "unit normals",
    "albedo": "RGB reflectance",
}
TASKS = tuple(REGISTRY)

_LOADED: dict[str, "TaskSpec"] = {}


def get_task(name: str) -> "TaskSpec":
    """The spec of task ``name`` (ValueError naming the allowed tasks otherwise)."""
    spec = _LOADED.get(name)
    if spec is None:
        if name not in REGISTRY:
            raise ValueError(f"task {name!r}: allowed {', '.join(REGISTRY)}")
        spec = importlib.import_module(f"{__name__}.{name}").SPEC
        if spec.name != name:
            raise AssertionError(f"heads/tasks/{name}.py declares a spec named {spec.name!r}")
        _LOADED[name] = spec
    return spec


def describe() -> str:
    """``pose (308 keypoint heatmaps), seg (29 body parts), ...`` for --help."""
    return ", ".join(f"{name} ({what})" for name, what in REGISTRY.items())


__all__ = ["REGISTRY", "TASKS", "describe", "get_task"]
