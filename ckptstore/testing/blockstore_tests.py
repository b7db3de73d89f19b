"""BlockStoreTests: the behaviour every BlockStore backend must show.

Subclass in ``tests/conformance/`` and provide a ``store`` fixture that
returns an empty backend instance.
"""

from __future__ import annotations

import time

import pytest

from ckptstore.errors import PackNotFound
from ckptstore.store.blockstore.base import BlockStore


class BlockStoreTests:
    def test_put_then_get_returns_the_bytes(self, store: BlockStore) -> None:
        store.put("pack0001", b"hello pack")
        assert store.get("pack0001") == b"hello pack"

    def test_get_byte_range(self, store: BlockStore) -> None:
        data = bytes(range(256)) * 40
        store.put("pack0002", data)
        assert store.get("pack0002", 100, 1000) == data[100:1100]
        assert store.get("pack0002", 10_000) == data[10_000:]

    def test_put_accepts_memoryview(self, store: BlockStore) -> None:
        store.put("pack0003", memoryview(b"abcdef")[1:4])
        assert store.get("pack0003") == b"bcd"

    def test_put_never_overwrites(self, store: BlockStore) -> None:
        store.put("pack0004", b"first")
        with pytest.raises(FileExistsError):
            store.put("pack0004", b"second")
        assert store.get("pack0004") == b"first"

    def test_get_missing_raises_pack_not_found(self, store: BlockStore) -> None:
        with pytest.raises(PackNotFound) as info:
            store.get("nosuchpack")
        assert info.value.pack_id == "nosuchpack"

    def test_delete_removes_and_is_idempotent(self, store: BlockStore) -> None:
        store.put("pack0005", b"x")
        store.delete("pack0005")
        store.delete("pack0005")
        with pytest.raises(PackNotFound):
            store.get("pack0005")

    def test_list_shows_complete_objects_with_sizes(self, store: BlockStore) -> None:
        before = time.time() - 5
        store.put("pack00a1", b"12345")
        store.put("pack00b2", b"1")
        listed = {obj.name: obj for obj in store.list()}
        assert set(listed) == {"pack00a1", "pack00b2"}
        assert listed["pack00a1"].size == 5
        assert listed["pack00a1"].modified_at >= before

    def test_empty_object_round_trips(self, store: BlockStore) -> None:
        store.put("pack0006", b"")
        assert store.get("pack0006") == b""

    def test_an_object_written_in_pieces_appears_whole_at_commit(self, store: BlockStore) -> None:
        pending = store.begin("pack0007")
        pending.write(b"first piece, ")
        pending.write(memoryview(b"xsecond piecex")[1:-1])
        assert "pack0007" not in {obj.name for obj in store.list()}
        with pytest.raises(PackNotFound):
            store.get("pack0007")
        pending.commit()
        assert store.get("pack0007") == b"first piece, second piece"
        pending.abort()  # after commit: nothing happens
        assert store.get("pack0007") == b"first piece, second piece"
        with pytest.raises(ValueError):
            pending.write(b"more")

    def test_an_aborted_object_leaves_nothing(self, store: BlockStore) -> None:
        pending = store.begin("pack0008")
        pending.write(b"partial")
        pending.abort()
        pending.abort()
        assert list(store.list()) == []
        with pytest.raises(PackNotFound):
            store.get("pack0008")
        with pytest.raises(ValueError):
            pending.commit()

    def test_committing_a_taken_name_keeps_the_old_object(self, store: BlockStore) -> None:
        store.put("pack0009", b"first")
        pending = store.begin("pack0009")
        pending.write(b"second")
        with pytest.raises(FileExistsError):
            pending.commit()
        assert store.get("pack0009") == b"first"
        assert [obj.name for obj in store.list()] == ["pack0009"]
