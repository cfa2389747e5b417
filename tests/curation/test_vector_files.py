"""Stage 6's vector files: counting their vectors reads only the ``.npy`` header inside the npz, so the
search planner never pulls every vector file through one process just to size the index."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from humans.curation.stages.embedding_run import load_emb, npz_rows


def _write(path, n: int, dim: int = 16) -> np.ndarray:
    x = np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)
    buf = io.BytesIO()  # the layout EmbedWorker.process writes
    np.savez(buf, keys=np.array([f"k{i}" for i in range(n)]), vecs=x,
             pixels=np.full(n, 64 * 48, np.int64), nbytes=np.full(n, 1000, np.int64))
    path.write_bytes(buf.getvalue())
    return x


@pytest.mark.parametrize("n", [0, 1, 37, 5000])
def test_rows_come_from_the_header(tmp_path, n):
    p = tmp_path / "t.npz"
    x = _write(p, n)
    assert npz_rows(str(p)) == n == len(load_emb(str(p))[1])
    assert np.array_equal(load_emb(str(p))[1], x)


def test_counting_does_not_read_the_vectors(tmp_path):
    p = tmp_path / "t.npz"
    _write(p, 5000)
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("vecs.npy")
    raw = bytearray(p.read_bytes())
    # spoil vector bytes far past the member's header: a full read fails its CRC check, the count does not
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 4096
    raw[start:start + 64] = b"\xff" * 64
    p.write_bytes(bytes(raw))
    assert npz_rows(str(p)) == 5000
    with pytest.raises(zipfile.BadZipFile):
        load_emb(str(p))
