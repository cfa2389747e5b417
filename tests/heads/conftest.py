"""Session fixtures of the heads tests: a randomly initialised tiny backbone (clearly named as such)
and a small synthetic labelled set made once per session by the real generator (shared.synth)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HUMANS_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).parent))  # heads_testdata

SYNTH_COUNT = 40      # images: 30 train / 10 held out (val_frac 0.25)
SYNTH_SIZE = 128      # pixels, the generator's --size


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny models: as fast, and robust on a busy machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def random_tiny_backbone(tmp_path_factory) -> Path:
    """``build_backbone('sapiens2-tiny')`` with random weights (seed 0): NOT a pretrained model."""
    from humans.shared.backbone import build_backbone, save_backbone

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("backbones") / "random_tiny_backbone.safetensors"
    save_backbone(build_backbone("sapiens2-tiny"), path)
    return path


@pytest.fixture(scope="session")
def random_tiny_backbone_b(tmp_path_factory) -> Path:
    """A second random-init tiny backbone (seed 1), for side-by-side tables."""
    from humans.shared.backbone import build_backbone, save_backbone

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("backbones_b") / "random_tiny_backbone_seed1.safetensors"
    save_backbone(build_backbone("sapiens2-tiny"), path)
    return path


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """A humans-dense-v1 folder written by the real generator (shared.synth.writer.write_dataset, what
    ``python -m shared.synth --out DATA --count 40 --size 128`` runs)."""
    from humans.shared.synth.writer import write_dataset

    out = tmp_path_factory.mktemp("synth") / "data"
    write_dataset(out, SYNTH_COUNT, SYNTH_SIZE, seed=0, workers=2, progress=False)
    assert (out / "meta.json").is_file()
    return out
