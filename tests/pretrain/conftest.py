"""Fixtures for the pretrain tests: real-photo fixture shards, the curated shards, thread hygiene."""
from __future__ import annotations

import pytest
import torch

from pretrain_testlib import make_fixture_shards


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Trainer configs set torch's thread count; give the rest of the suite its setting back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def fixture_shards(tmp_path_factory):
    """Two shards of 8 real-photo crops each (JPEG + SampleMeta JSON) with a manifest."""
    return make_fixture_shards(tmp_path_factory.mktemp("pretrain_shards") / "shards", n_images=16, per_shard=8)
