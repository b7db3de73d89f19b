"""PackWriter: packs written in pieces as they fill, and what a failed write leaves."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ckptstore import CheckpointStore
from ckptstore.store.blockstore.durable import TEMP_MARKER
from ckptstore.store.blockstore.local import LocalBlockStore
from ckptstore.store.packs.format import iter_entries
from tests.conftest import TEST_CONFIG, random_bytes, restore_bytes


def pack_files(store: CheckpointStore) -> list[str]:
    return sorted(path.name for path in store.context.blocks.root.glob("*/*"))


def route_piece_writes(monkeypatch, through) -> None:
    """Every piece the local block store is asked to write goes through
    ``through(write, *parts)``, ``write`` being the real one."""
    begin = LocalBlockStore.begin

    def routed_begin(self, name):
        pending = begin(self, name)
        write = pending.write
        pending.write = lambda *parts: through(write, *parts)
        return pending

    monkeypatch.setattr(LocalBlockStore, "begin", routed_begin)


def test_packs_written_in_pieces_hold_every_block_where_the_catalog_says(tmp_path, monkeypatch):
    pieces: list[int] = []

    def counted(write, *parts):
        pieces.append(sum(map(len, parts)))
        write(*parts)

    route_piece_writes(monkeypatch, counted)
    data = random_bytes(3_000_000, seed=7)
    with CheckpointStore.open(tmp_path, config=TEST_CONFIG) as store:
        record = store.put("job", data)
        packs = {usage.pack_id for usage in store.context.catalog.pack_usage()}
        assert len(pieces) > 2 * len(packs)  # most packs came in several pieces
        for pack_id in packs:
            entries = {e.block_id: e for e, _ in iter_entries(store.context.blocks.get(pack_id))}
            for block in store.context.catalog.blocks_in_pack(pack_id):
                assert entries[block.block_id].offset == block.offset
        assert restore_bytes(store, record.checkpoint_id) == data
        assert store.verify(read_data=True).ok


@pytest.mark.parametrize("failing_piece", [1, 5])
def test_a_failed_pack_write_fails_the_put_and_leaves_no_file(tmp_path, monkeypatch, failing_piece):
    with CheckpointStore.open(tmp_path, config=TEST_CONFIG) as store:
        kept = store.put("job", random_bytes(1_000_000, seed=1))
        before = pack_files(store)
        written = 0

        def write_or_fail(write, *parts):
            nonlocal written
            written += 1
            if written == failing_piece:
                raise OSError(28, "No space left on device")
            write(*parts)

        route_piece_writes(monkeypatch, write_or_fail)
        with pytest.raises(OSError, match="No space left"):
            store.put("job", random_bytes(3_000_000, seed=2))
        monkeypatch.undo()
        assert [c.checkpoint_id for c in store.list("job").checkpoints] == [kept.checkpoint_id]
        assert not [name for name in pack_files(store) if TEMP_MARKER in name]
        # packs sealed before the failure stay until GC takes them; nothing else appeared
        recorded = {f"{usage.pack_id}.pack" for usage in store.context.catalog.pack_usage()}
        assert set(pack_files(store)) <= recorded | set(before)
        again = store.put("job", random_bytes(2_000_000, seed=3))
        assert restore_bytes(store, again.checkpoint_id) == random_bytes(2_000_000, seed=3)
        assert store.verify(read_data=True).ok


def test_a_slow_disk_holds_back_the_writer_not_memory(tmp_path, monkeypatch):
    """The writer hands at most MAX_QUEUED pieces to its thread before waiting."""
    import threading

    from ckptstore.store.packs import writer

    gate = threading.Event()
    most = 0

    def slow_write(write, *parts):
        gate.wait(0.005)
        write(*parts)

    original_submit = writer.PackWriter._submit

    def watching_submit(self, fn, *args):
        nonlocal most
        original_submit(self, fn, *args)
        most = max(most, len(self._queued))

    route_piece_writes(monkeypatch, slow_write)
    monkeypatch.setattr(writer.PackWriter, "_submit", watching_submit)
    config = replace(TEST_CONFIG, pack_target_bytes=256 * 1024)
    with CheckpointStore.open(tmp_path, config=config) as store:
        data = random_bytes(4_000_000, seed=4)
        record = store.put("job", data)
        assert restore_bytes(store, record.checkpoint_id) == data
    assert 1 <= most <= writer.MAX_QUEUED


def test_a_payload_given_as_a_view_is_stored_as_it_was_when_added(tmp_path):
    """Pieces are written later, on the writer's thread: a view of a buffer the caller
    reuses (an ingest window) must be stored with the bytes it had when added."""
    from ckptstore.store.codecs.ids import Codec
    from ckptstore.store.ids import block_id
    from ckptstore.store.packs.format import ENTRY
    from ckptstore.store.packs.writer import PackWriter

    with CheckpointStore.open(tmp_path, config=TEST_CONFIG) as store:
        ctx = store.context
        window = bytearray(random_bytes(300_000, seed=9))
        first = bytes(window[:100_000])
        writer = PackWriter(ctx, "holder")
        try:
            writer.add(block_id(first), Codec.RAW, len(first), memoryview(window)[:100_000])
            window[:100_000] = bytes(100_000)  # the caller reuses its buffer at once
            second = bytes(window[100_000:])
            writer.add(block_id(second), Codec.RAW, len(second), memoryview(window)[100_000:])
            writer.finish()
        finally:
            writer.close()
        for data in (first, second):
            record = ctx.catalog.get_block(block_id(data))
            entry = ctx.blocks.get(record.pack_id, record.offset, ENTRY.size + record.stored_len)
            assert entry[ENTRY.size :] == data
