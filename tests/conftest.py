"""Session fixtures shared by every area's tests.

- ``demo_pool_dir``: the small labelled demo pool (``curation.demo_pool``, ~110 items).
- ``curated_run_dir``: the real curation pipeline (``humans-test``) run on local Ray over that pool:
  shards, index.parquet, manifest.json, run.json and every stage's decision parquets.
- ``ray_local``: one local Ray instance (2 CPUs, loopback) shared by the tests that need Ray, stopped
  at the end of the session; its GCS address is ``ray_local.address`` (other processes can join it,
  as a job under ``ray job submit`` joins its cluster).

Under pytest-xdist (``scripts/test.sh`` runs two workers with ``--dist loadgroup``) every test that uses
``ray_local`` or ``curated_run_dir`` is put in one group, so one worker runs them all: the pool is
curated once and one session Ray instance serves them (each worker makes its own small demo pool, a few
seconds; tests that start their own Ray clusters run on either worker).

The offline runtime environment (no hub downloads, no Ray telemetry, Ray on 127.0.0.1) is set
before any test module is imported.
"""
from __future__ import annotations

import os

import pytest

from humans.shared.runtime import setup_runtime

setup_runtime()
os.environ.setdefault("HUMANS_NO_PROGRESS", "1")

TEST_PIPELINE = "humans-test"
CURATION_FIXTURES = {"curated_run_dir", "ray_local"}


def pytest_itemcollected(item):
    """One xdist group for the tests that share the curation fixtures (a no-op without xdist); marked as
    each test is collected, before xdist reads the group marks."""
    if CURATION_FIXTURES & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.xdist_group("curation"))


@pytest.fixture(scope="session")
def demo_pool_dir(tmp_path_factory):
    """The small labelled demo pool: ``images/`` and ``labels.parquet``."""
    from humans.curation.demo_pool import make_demo_pool

    return make_demo_pool(tmp_path_factory.mktemp("demo") / "pool", scale="small")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance for the session (reused by ``run_pipeline``, which then leaves it up)."""
    import ray

    from humans.curation.pipeline import init_ray

    started = init_ray(num_cpus=2)
    ray.address = ray.get_runtime_context().gcs_address
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def curated_run_dir(demo_pool_dir, ray_local, tmp_path_factory):
    """A finished curation run over ``demo_pool_dir`` (pipeline ``humans-test``)."""
    from humans.curation import run_pipeline

    out = tmp_path_factory.mktemp("curated") / "run"
    run_pipeline(str(demo_pool_dir), str(out), pipeline=TEST_PIPELINE)
    return out
