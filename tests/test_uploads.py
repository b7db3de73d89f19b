"""Dedup-aware uploads: only missing blocks travel; ids are always checked."""

from __future__ import annotations

import pytest

from ckptstore.errors import BlockHashMismatch, BlocksNotUploaded
from ckptstore.store.ids import block_id
from tests.conftest import client_blocks, random_bytes, restore_bytes

MB = 1_000_000


def upload(store, data: bytes, **fields) -> tuple[object, int]:
    chunks = client_blocks(store, data)
    by_id = dict(chunks)
    with store.begin_upload("job_up", **fields) as up:
        missing = up.missing([bid for bid, _ in chunks])
        for bid in missing:
            up.put_block(bid, by_id[bid])
        record = up.commit([bid for bid, _ in chunks])
    return record, sum(len(by_id[bid]) for bid in missing)


def test_upload_round_trips_and_sends_only_new_blocks(store):
    data = random_bytes(6 * MB, seed=1)
    first, sent_first = upload(store, data, epoch=1)
    assert sent_first == len(data)
    changed = data[: 3 * MB] + random_bytes(100_000, seed=2) + data[3 * MB + 100_000 :]
    second, sent_second = upload(store, changed, epoch=2)
    assert sent_second < 0.3 * len(data)
    assert restore_bytes(store, first.checkpoint_id) == data
    assert restore_bytes(store, second.checkpoint_id) == changed
    assert second.size_bytes == len(changed)


def test_unchanged_upload_sends_nothing(store):
    data = random_bytes(4 * MB, seed=3)
    upload(store, data)
    again, sent = upload(store, data)
    assert sent == 0 and again.stored_bytes == 0
    assert restore_bytes(store, again.checkpoint_id) == data


def test_upload_matches_put_block_ids(store):
    data = random_bytes(3 * MB, seed=4)
    store.put("job_up", data)
    _, sent = upload(store, data)
    assert sent == 0  # client-side chunking agrees with the server's


def test_block_with_wrong_id_is_rejected(store):
    with store.begin_upload("job_up") as up:
        with pytest.raises(BlockHashMismatch) as info:
            up.put_block(block_id(b"claimed"), b"actual")
        assert info.value.actual_id == block_id(b"actual").hex()
        with pytest.raises(BlocksNotUploaded):
            up.commit([block_id(b"claimed")])
    assert store.stats().blocks == 0


def test_commit_naming_unsent_block_is_rejected(store):
    with store.begin_upload("job_up") as up:
        up.put_block(block_id(b"sent"), b"sent")
        with pytest.raises(BlocksNotUploaded) as info:
            up.commit([block_id(b"sent"), block_id(b"never sent")])
    assert info.value.block_ids == [block_id(b"never sent").hex()]
    assert store.list("job_up").total_count == 0


def test_abort_releases_leases(store, clock):
    data = random_bytes(MB, seed=5)
    ck = store.put("job_up", data)
    ids = [bid for bid, _ in client_blocks(store, data)]
    with store.begin_upload("job_up") as up:
        up.missing(ids)
        up.abort()
    store.delete(ck.checkpoint_id)
    clock.advance(61)
    assert store.gc().blocks_removed == len(set(ids))


def test_fingerprint_matches_the_stores_own_blocks(store, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from ckptstore.store.chunking.fingerprint import fingerprint

    data = random_bytes(5 * MB, seed=9)
    path = tmp_path / "ckpt.bin"
    path.write_bytes(data)
    record = store.put("job_up", data)
    stored = [
        (rec.block_id, rec.raw_len)
        for _, rec in store.context.catalog.manifest(record.checkpoint_id)
    ]
    with ThreadPoolExecutor(2) as pool:
        assert fingerprint(path, store.context.chunker, pool, window_bytes=1 << 20) == stored
        assert fingerprint(iter([data[:123], data[123:]]), store.context.chunker, pool) == stored


def test_a_pending_checkpoint_deleted_while_its_data_streams_stays_deleted(store):
    from ckptstore.errors import CheckpointNotFound

    pending = store.create_pending("job_del", tenant="t")

    def chunks():
        yield random_bytes(300_000, seed=1)
        store.delete(pending.checkpoint_id, tenant="t")  # the DELETE lands mid-upload
        yield random_bytes(300_000, seed=2)

    with pytest.raises(CheckpointNotFound):
        store.fill(pending.checkpoint_id, chunks(), tenant="t")
    with pytest.raises(CheckpointNotFound):
        store.get(pending.checkpoint_id, tenant="t")
    assert store.verify().ok


def test_a_resumed_upload_is_not_asked_again_for_blocks_it_sent(store):
    data = random_bytes(600_000, seed=7)
    blocks = client_blocks(store, data)
    pending = store.create_pending("job_resume", tenant="t")
    first = store.resume_upload(pending.checkpoint_id, tenant="t")
    ids = [bid for bid, _ in blocks]
    assert first.missing(ids) == list(dict.fromkeys(ids))
    half = blocks[: len(blocks) // 2]
    first.put_blocks([(bid, chunk, None, None) for bid, chunk in half])
    first.flush()  # the connection drops here; a new request resumes the upload
    resumed = store.resume_upload(pending.checkpoint_id, tenant="t")
    assert resumed.missing(ids) == list(dict.fromkeys(bid for bid, _ in blocks[len(half) :]))
    rest = blocks[len(half) :]
    resumed.put_blocks([(bid, chunk, None, None) for bid, chunk in rest])
    record = resumed.commit(ids)
    with store.open_reader(record.checkpoint_id, tenant="t") as reader:
        assert reader.read() == data
