"""Backbone tests: small randomly initialised models on CPU, two threads at most."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
