"""BaseCache keeps the blocks the next rebases need without thrashing."""

from __future__ import annotations

import dataclasses

from ckptstore.store.packs.basecache import BaseCache
from ckptstore.testing.formats import safetensors_bytes
from tests.conftest import restore_bytes
from tests.test_deltas import CONFIG, model


def test_entries_are_taken_once():
    cache = BaseCache(100)
    gen = cache.new_generation()
    cache.offer(b"a", b"x" * 10, gen)
    assert cache.take(b"a") == b"x" * 10
    assert cache.take(b"a") is None
    assert cache.size == 0


def test_an_ingest_never_pushes_out_its_own_blocks():
    cache = BaseCache(30)
    gen = cache.new_generation()
    for name in (b"a", b"b", b"c", b"d"):
        cache.offer(name, b"x" * 10, gen)
    assert len(cache) == 3 and cache.take(b"d") is None  # the first part stays
    assert cache.size <= 30


def test_a_later_ingest_replaces_older_blocks_oldest_first():
    cache = BaseCache(30)
    old = cache.new_generation()
    for name in (b"a", b"b", b"c"):
        cache.offer(name, b"x" * 10, old)
    new = cache.new_generation()
    cache.offer(b"n1", b"y" * 10, new)
    assert cache.take(b"a") is None and cache.take(b"b") == b"x" * 10
    cache.offer(b"n2", b"y" * 10, new)  # fits in the room the take made
    assert cache.take(b"c") == b"x" * 10
    assert cache.size == 20


def test_too_big_or_zero_capacity_keeps_nothing():
    cache = BaseCache(0)
    cache.offer(b"a", b"x", cache.new_generation())
    assert len(cache) == 0


def test_cached_bases_give_the_same_store_as_decoded_ones(open_store, tmp_path):
    files = [safetensors_bytes(model(3, step)) for step in range(3)]
    stores = [
        open_store(tmp_path / name, dataclasses.replace(CONFIG, delta_cache_bytes=size))
        for name, size in (("cached", 64 << 20), ("uncached", 0))
    ]
    for store in stores:
        ids = [store.put("run", data).checkpoint_id for data in files]
        store.settle()
        for checkpoint_id, data in zip(ids, files, strict=True):
            assert restore_bytes(store, checkpoint_id) == data
    cached, uncached = (
        sorted((r.block_id, r.codec, r.base_id) for r in s.context.catalog.iter_blocks())
        for s in stores
    )
    assert cached == uncached
    assert any(base for _, _, base in cached)  # rebased: there were deltas to compare
    assert stores[0].context.base_cache.size > 0


def test_an_upload_keeps_its_tag_across_requests():
    cache = BaseCache(30)
    first = cache.new_generation("upl_a")
    for name in (b"a", b"b", b"c"):
        cache.offer(name, b"x" * 10, first)
    later_request = cache.new_generation("upl_a")
    assert later_request == first
    cache.offer(b"d", b"x" * 10, later_request)  # its own blocks are not pushed out
    assert cache.take(b"a") == b"x" * 10 and cache.take(b"d") is None
    assert cache.new_generation("upl_b") > first
