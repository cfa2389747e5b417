"""Property test (hypothesis): random byte strings, random bytes behind real image signatures and
random truncations of valid images never crash or hang a stage. Each example goes through the real
per-image stages of one pool task, in this process: read (bounded file read), header, resolution,
decode, quality, pHash, storage re-encode (``filter_task``), then person detection and framing and
the commit of the decision parquets (``TaskCommitter``). Every item ends as exactly one read
decision with a known reason; a slow example fails the test (hypothesis ``deadline``).

The examples are derandomised (the same on every run, no example database written) and few, so
the test takes seconds."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from humans.curation.config import load_pipeline
from humans.curation.decisions import read_decisions
from humans.curation.localread import READ_REASONS
from humans.curation.sources import PoolTask
from humans.curation.work import TaskCommitter, filter_task
from humans.shared.imageio import REASONS as IMAGE_REASONS

SETTINGS = dict(max_examples=20, deadline=3000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAGIC = [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]


def _valid_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    base = (rng.random((72, 96, 3)) * 255).astype(np.uint8)
    out = []
    for fmt, kw in (("JPEG", {"quality": 80}), ("PNG", {}), ("WEBP", {}), ("GIF", {}), ("TIFF", {}),
                    ("BMP", {}), ("JPEG", {"progressive": True})):
        buf = io.BytesIO()
        Image.fromarray(base).save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    return out


VALID = _valid_images()


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    cfg = load_pipeline("humans-test", overrides={"resolution.min_short_side": 8, "resolution.min_pixels": 0,
                                                  "quality.min_sharpness": 0, "quality.min_entropy": 0})
    committer = TaskCommitter(cfg, str(tmp_path_factory.mktemp("prop_run")))
    return cfg, committer, tmp_path_factory.mktemp("prop_pool")


def _run_one(stages, data: bytes) -> None:
    cfg, committer, pool = stages
    (pool / "x.jpg").write_bytes(data)
    task = PoolTask(task_id="files-000000-prop", kind="files", root=str(pool), entries=(("x.jpg", "x"),))
    committer.process(filter_task(task, cfg, 0))
    read = read_decisions(committer.run_dir, "read")
    assert len(read) == 1
    reason = read["reason"].iloc[0]
    assert bool(read["kept"].iloc[0]) == (reason == ""), reason
    assert reason in ("",) + IMAGE_REASONS + READ_REASONS, reason


@settings(**SETTINGS)
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=2048))
def test_random_bytes_never_crash_or_hang_a_stage(stages, magic, tail):
    _run_one(stages, magic + tail)


@settings(**SETTINGS)
@given(which=st.integers(0, len(VALID) - 1), frac=st.floats(0, 1), flip=st.integers(0, 255))
def test_truncated_and_damaged_images_never_crash_or_hang_a_stage(stages, which, frac, flip):
    data = VALID[which]
    cut = int(len(data) * frac)
    damaged = bytearray(data[:cut])
    if damaged and flip:  # damage one byte inside what is left
        damaged[(flip * 7919) % len(damaged)] ^= flip
    _run_one(stages, bytes(damaged))
