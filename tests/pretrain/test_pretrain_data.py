"""Shard input: shard-list resolution, per-rank/per-worker splitting, exact data position, bad images."""
from __future__ import annotations

import itertools

import pytest
import torch

from humans.pretrain.config import DataConfig, ViewsConfig
from humans.pretrain.data import DataFeed, DataState, SlotPosition, ViewStream, resolve_shards
from humans.shared.shards import ShardWriter, write_manifest

VIEWS = ViewsConfig(global_size=32, local_size=16, n_local=1)


def test_resolve_shards_forms_and_errors(fixture_shards, tmp_path):
    d = str(fixture_shards)
    from_dir = resolve_shards(d)                                         # manifest of a run directory
    assert [p.rsplit("/", 1)[1] for p in from_dir] == ["humans-000000.tar", "humans-000001.tar"]
    assert resolve_shards(d + "/humans-{000000..000001}.tar") == from_dir
    assert resolve_shards(d + "/humans-*.tar") == from_dir
    assert resolve_shards(",".join(from_dir)) == from_dir
    with pytest.raises(ValueError, match=r"shard not found: .*humans-000002.tar"):
        resolve_shards(d + "/humans-{000000..000002}.tar")
    with pytest.raises(ValueError, match="matches no file"):
        resolve_shards(d + "/nope-*.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no shards"):
        resolve_shards(str(tmp_path / "empty"))


def _epoch_keys(stream: ViewStream, g: int) -> list[str]:
    keys = []
    for _gv, _lv, key, pos in stream.slot_samples(g, SlotPosition()):
        if pos.epoch > 0:
            break
        keys.append(key)
    return keys


@pytest.mark.parametrize("world,workers", [(2, 1), (2, 2)])   # whole shards per slot / samples per slot
def test_ranks_and_workers_read_disjoint_parts_covering_every_sample(fixture_shards, world, workers):
    urls = resolve_shards(str(fixture_shards))
    data = DataConfig(batch_size=2, num_workers=workers, shuffle_buffer=4, shuffle_initial=2)
    parts = []
    for rank in range(world):
        stream = ViewStream(urls, data, VIEWS, 0, seed=3, rank=rank, world=world)
        for slot in range(workers):
            parts.append(_epoch_keys(stream, rank * workers + slot))
    flat = [k for p in parts for k in p]
    assert len(flat) == len(set(flat)) == 16 and all(parts)


def test_resumed_feed_continues_exactly_where_the_consumed_batches_ended(fixture_shards):
    urls = resolve_shards(str(fixture_shards))
    data = DataConfig(batch_size=3, num_workers=2, shuffle_buffer=4, shuffle_initial=2)
    feed = DataFeed(urls, data, VIEWS, 1, seed=5)
    first = list(itertools.islice(feed, 4))          # 4 batches x 3 > one epoch of 8 per slot
    state = DataState.from_dict(feed.state.to_dict())
    expected = list(itertools.islice(feed, 5))
    feed.close()
    assert state.batches == 4 and set(state.slots) == {0, 1}
    again = DataFeed(urls, data, VIEWS, 1, seed=5, state=state)
    got = list(itertools.islice(again, 5))
    again.close()
    for e, g in zip(expected, got):
        assert e["keys"] == g["keys"] and torch.equal(e["global"], g["global"]) and torch.equal(e["local"], g["local"])
    seen = [k for b in first + expected for k in b["keys"]]
    assert len(set(seen)) == 16                           # every image came by; epochs reshuffle
    assert first[0]["global"].shape == (3, 2, 3, 32, 32) and first[0]["global"].dtype == torch.uint8


def test_undecodable_images_are_skipped_and_named(fixture_shards, tmp_path):
    from humans.shared.shards import iter_tar_samples

    good = [s for s, _ in zip(iter_tar_samples(str(fixture_shards / "humans-000000.tar")), range(3))]
    w = ShardWriter(tmp_path, "bad", 0)
    for s in good[:2]:
        w.add(s["__key__"], {"jpg": s["jpg"], "json": s["json"]})
    w.add("broken", {"jpg": good[2]["jpg"][:200], "json": good[2]["json"]})   # truncated JPEG
    w.add("nojpg", {"json": good[2]["json"]})
    w.add(good[2]["__key__"], {"jpg": good[2]["jpg"], "json": good[2]["json"]})
    write_manifest(tmp_path, [w.close()])
    stream = ViewStream(resolve_shards(str(tmp_path)), DataConfig(batch_size=1, num_workers=0,
                        shuffle_buffer=1, shuffle_initial=1), VIEWS, 0, seed=0)
    keys = [k for _g, _l, k, _p in itertools.islice(stream.slot_samples(0, SlotPosition()), 3)]
    assert keys == [s["__key__"] for s in good]     # 'broken' and 'nojpg' skipped, order kept
