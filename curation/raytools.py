"""Ray plumbing of the curation pipeline: joining or starting a cluster, where paths point, what
environment the workers get, how actors and tasks are sized and placed.

- ``resolve_location`` runs on the driver: a URI stays as it is, a relative local path becomes
  absolute (logged), except under ``ray job submit`` where the driver's working folder is Ray's
  temporary copy of ``--working-dir`` (``runtime_resources/working_dir_files/...``): a relative path
  there is refused, since its output would land in that copy, which Ray deletes.
- ``worker_env`` is the part of the driver's environment the workers need (object-store endpoint and
  credentials, ``HUMANS_*``, offline switches); ``options``/``remote`` attach it to every task and
  actor as a Ray ``runtime_env`` (merged with the job's own), so workers on any node, and workers of a
  Ray instance started before the variables were set, see what the driver sees. Note that Ray keeps a
  runtime env in its control store: on a shared cluster prefer instance roles to secret keys.
"""
from __future__ import annotations

import os
import time

from humans.shared import storage
from humans.shared.log import get_logger

log = get_logger("curation")

# environment variables forwarded to Ray workers on a cluster (exact names, then prefixes)
FORWARD_NAMES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE", "YOLO_CONFIG_DIR", "OMP_NUM_THREADS",
                 "OMP_WAIT_POLICY", "GOPEN_BUFFER")
FORWARD_PREFIXES = ("AWS_", "HUMANS_")
_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray in the driver of a submitted job


class LocationError(ValueError):
    """A path that would not point where the user expects (e.g. relative under ``ray job submit``)."""


def in_submitted_job() -> bool:
    """Whether this process is the driver of a ``ray job submit`` job (cwd = Ray's working-dir copy)."""
    return _JOB_ENV in os.environ or "working_dir_files" in os.getcwd().split(os.sep)


def resolve_location(uri: str, what: str) -> str:
    """``uri`` made absolute on the driver (URIs unchanged); a relative path is refused in a submitted job."""
    s = str(uri)
    if "://" in s and not s.startswith("file://") or s.startswith("pipe:"):
        return storage.resolve(s) if storage.is_remote(s) else s  # http(s)://, pipe: shards: as given
    if os.path.isabs(os.path.expanduser(s)):
        return storage.resolve(s)
    if in_submitted_job():
        raise LocationError(
            f"{what} {s!r} is a relative path, and this driver runs under `ray job submit` in Ray's "
            f"temporary copy of the working directory ({os.getcwd()}): the files would land there and be "
            f"deleted by Ray. Pass an absolute path on storage every node sees, or an s3:// URI.")
    full = storage.resolve(s)
    log.info("%s %r resolved to %s", what, s, full)
    return full


def worker_env() -> dict[str, str]:
    """The driver's environment variables that the workers need (see FORWARD_NAMES / FORWARD_PREFIXES)."""
    return {k: v for k, v in sorted(os.environ.items())
            if k in FORWARD_NAMES or k.startswith(FORWARD_PREFIXES)}


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to a cluster (address / RAY_ADDRESS) or start a local one; True if we must shut it down."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
        log.info("connected to Ray cluster at %s: %s; workers get %s", address, ray.cluster_resources(),
                 sorted(worker_env()) or "no extra environment variables")
        return True
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
             object_store_memory=int(os.environ.get("HUMANS_RAY_OBJECT_STORE_MB", "1024")) * 2**20)
    log.info("started a local Ray instance: %s", ray.cluster_resources())
    return True


def options(num_cpus: float, num_gpus: float = 0, **kw) -> dict:
    """Ray ``.options`` for a task or actor: its resources plus the forwarded environment."""
    opts = {"num_cpus": num_cpus, "num_gpus": num_gpus, **kw}
    env = worker_env()
    if env:
        opts["runtime_env"] = {"env_vars": env}
    return opts


def remote(fn, res, gpu: bool = True, **kw):
    """``fn`` (function or class) as a Ray remote with the stage's resources (``gpu=False``: CPU-only)."""
    import ray

    return ray.remote(fn).options(**options(res.num_cpus, res.num_gpus if gpu else 0, **kw))


def fit_actors(want: int, cpus: float, total_cpus: float, reserve: float) -> tuple[int, float]:
    """Actors hold their CPUs for life: keep ``reserve`` CPUs free for plain tasks so none starve."""
    free = max(total_cpus - reserve, 0.0)
    n = max(1, min(want, int(free // cpus) if cpus > 0 else want))
    if cpus > 0 and n * cpus > free:
        # no CPU left beside the reserve (e.g. --threads 1): the actors take none, so that the plain
        # tasks they depend on can still be scheduled (a 0.01-CPU actor left 0.99 of 1 CPU: a 1-CPU
        # filter task never ran)
        cpus = free / n if free > 0 else 0.0
    return n, cpus


def batches(items: list, max_batch: int = 64, per_cpu: int = 4, cpus: float | None = None) -> list[list]:
    """``items`` (pool tasks) cut into contiguous batches, one Ray call each, for the cheap per-task steps
    (pHash map, the dedup decisions): about ``per_cpu`` batches per cluster CPU, none over ``max_batch``
    items: a pool of millions of tasks makes thousands of Ray calls per step, not millions. (On the 29-task
    demo pool it made no difference that could be measured: benchmarks/results/curation_speed.md.)"""
    if not items:
        return []
    if cpus is None:
        import ray

        cpus = float(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1.0
    n = max(-(-len(items) // max_batch), min(len(items), max(1, int(per_cpu * cpus))))
    size = -(-len(items) // n)
    return [items[i:i + size] for i in range(0, len(items), size)]


def assigned_device(requested_gpus: float, gpu_ids: list | None = None, cuda_available: bool | None = None) -> str:
    """The torch device for a model in this Ray worker: ``cuda`` when the stage asked for GPUs and Ray
    assigned this worker one (Ray sets CUDA_VISIBLE_DEVICES to it, so it is ``cuda:0`` here), else ``cpu``.

    ``gpu_ids`` / ``cuda_available`` default to ``ray.get_gpu_ids()`` / ``torch.cuda.is_available()``.
    """
    if requested_gpus <= 0:
        return "cpu"
    if gpu_ids is None:
        try:
            import ray

            gpu_ids = list(ray.get_gpu_ids()) if ray.is_initialized() else []
        except Exception:  # noqa: BLE001 - outside a Ray worker: no assignment
            gpu_ids = []
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if gpu_ids and cuda_available:
        return "cuda:0"
    log.warning("a stage requested %s GPU(s) but this worker has %s: running on CPU", requested_gpus,
                f"Ray GPU ids {gpu_ids} and no usable CUDA device" if gpu_ids else "no GPU assigned by Ray")
    return "cpu"


class PhaseClock:
    """How much of a phase of per-task Ray work was start-up (actors loading models, workers importing)
    rather than work: the phase's time from its start to its last task, less its steady rate (first to last
    completion, per task) times its tasks. A pool of billions pays the steady rate; the start-up once."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.done: list[float] = []

    def tick(self) -> None:
        """One task completed."""
        self.done.append(time.perf_counter())

    def startup_s(self) -> float | None:
        """Seconds of start-up (None below three completed tasks: no rate to measure)."""
        n = len(self.done)
        if n < 3:
            return None
        steady = (self.done[-1] - self.done[0]) * n / (n - 1)
        return round(max(0.0, self.done[-1] - self.t0 - steady), 3)
