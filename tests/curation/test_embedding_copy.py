"""The embedding copy: the person actor stages a small RGB copy of each framing survivor, made from the
detector's copy, so the embedding actors embed it without decoding the stored image again; vectors from
it match those of a fresh reduced decode, and staged files without copies (open_clip, tasks staged by an
older run) still embed from their bytes."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from humans.curation.config import load_pipeline
from humans.curation.decisions import EMBED_COLUMNS, STAGED_SCHEMA, write_rows
from humans.curation.stages.embedding import BackboneEmbedder, copy_short_side, embedding_copy
from humans.curation.stages.embedding_run import staged_columns, staged_image


def test_copy_size_follows_the_embedder():
    st = load_pipeline("humans-test").stage("embedding")
    assert copy_short_side(st) == 192  # twice the backbone's default 96 px input
    assert copy_short_side(st.model_copy(update={"image_size": 64})) == 128
    assert copy_short_side(st.model_copy(update={"embedder": "open_clip"})) is None  # its size is the model's
    assert copy_short_side(None) is None


def test_copy_is_made_only_from_enough_pixels():
    small = np.zeros((288, 384, 3), np.uint8)
    assert embedding_copy(small, 0.19, 192).shape == (192, 256, 3)
    assert embedding_copy(small[:150, :200], 0.5, 192) is None  # downscaled below the embedder's need
    whole = embedding_copy(small[:150, :200], 1.0, 192)  # the stored image itself: nothing finer exists
    assert whole.shape == (150, 200, 3)


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _row(key: str, data: bytes, copy: np.ndarray | None) -> dict:
    row = {"key": key, "data": data, "width": 1, "height": 1, "file_bytes": len(data)}
    if copy is not None:
        row.update(embed_pixels=copy.tobytes(), embed_height=copy.shape[0], embed_width=copy.shape[1])
    return row


def test_staged_columns_read_the_bytes_only_where_a_copy_is_missing(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)
    data = _jpeg(rgb)
    copy = embedding_copy(rgb, 1.0, 192)
    with_copies = tmp_path / "a.parquet"
    write_rows(with_copies, [_row("a", data, copy), _row("b", data, copy)], STAGED_SCHEMA)
    t = staged_columns(str(with_copies))
    assert "data" not in t  # every row has its copy: the stored images are not even read
    assert np.array_equal(staged_image(t, 1, 96), copy)

    mixed = tmp_path / "m.parquet"
    write_rows(mixed, [_row("a", data, copy), _row("b", data, None)], STAGED_SCHEMA)
    t = staged_columns(str(mixed))
    assert t["data"][1] == data and t["embed_pixels"][1] is None
    assert staged_image(t, 1, 96).shape[:2] == (300, 400)

    old = tmp_path / "o.parquet"  # staged by a run from before embedding copies existed
    old_schema = STAGED_SCHEMA.remove(STAGED_SCHEMA.get_field_index(EMBED_COLUMNS[0]))
    for name in EMBED_COLUMNS[1:]:
        old_schema = old_schema.remove(old_schema.get_field_index(name))
    write_rows(old, [_row("a", data, None)], old_schema)
    assert set(EMBED_COLUMNS).isdisjoint(pq.read_schema(old).names)
    t = staged_columns(str(old))
    assert t["embed_pixels"] == [None] and staged_image(t, 0, 96).shape[:2] == (300, 400)


def test_vectors_from_the_copy_match_a_fresh_decode(demo_pool_dir):
    """Web-size photos (2000 px): the copy, via the detector's 384 px copy, embeds like a reduced decode."""
    emb = BackboneEmbedder(None, 96, (1, 2), threads=1, zoom_views=(1.0, 0.88))  # RANDOM INIT study-s8
    files = sorted((demo_pool_dir / "images").glob("person_*.jpg"))[:6]
    assert len(files) == 6
    from_copy, from_decode = [], []
    for f in files:
        im = np.asarray(Image.open(f).convert("RGB"))
        h, w = im.shape[:2]
        s = 2000 / max(h, w)
        big = cv2.resize(im, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
        data = _jpeg(big)
        t = {"key": [f.name], "data": [data], "embed_pixels": [None]}
        from_decode.append(staged_image(t, 0, emb.size))
        # what the pipeline does: a 1/4 decode for the analyses, the detector's 384 px copy, the embedding copy
        from humans.shared.imageio import decode_rgb_reduced

        reduced, _ = decode_rgb_reduced(data, f.name, 384)
        rh, rw = reduced.shape[:2]
        k = 384 / max(rh, rw)
        small = cv2.resize(reduced, (round(rw * k), round(rh * k)), interpolation=cv2.INTER_AREA)
        copy = embedding_copy(small, 384 / 2000, copy_short_side(load_pipeline("humans-test").stage("embedding")))
        assert min(copy.shape[:2]) == 192
        from_copy.append(copy)
    a, b = emb.embed(from_copy), emb.embed(from_decode)
    cos = (a * b).sum(1)
    assert cos.min() > 0.99, cos
    # and not because every image embeds alike: different people are far apart in the same space
    assert (a[0] * a[2]).sum() < cos.min()


def test_the_pipeline_stages_a_copy_for_every_survivor(curated_run_dir):
    staged = sorted((curated_run_dir / "work" / "staged").glob("*.parquet"))
    assert staged
    n = 0
    for path in staged:
        t = staged_columns(str(path))
        assert "data" not in t, path.name  # the embedding stage never decoded a stored image
        for ph, h, w in zip(t["embed_pixels"], t["embed_height"], t["embed_width"]):
            assert len(ph) == h * w * 3 and min(h, w) == 192
            n += 1
    assert n > 20
