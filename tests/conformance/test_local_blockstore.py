from pathlib import Path

import pytest

from ckptstore.store.blockstore import LocalBlockStore
from ckptstore.testing.blockstore_tests import BlockStoreTests


class TestLocalBlockStore(BlockStoreTests):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalBlockStore:
        return LocalBlockStore(tmp_path / "packs")

    def test_sweep_removes_only_old_temporaries(
        self, store: LocalBlockStore, tmp_path: Path
    ) -> None:
        store.put("pack0001", b"x")
        leftover = store.root / "pa" / "pack0002.pack.tmp-dead"
        leftover.write_bytes(b"partial")
        assert [o.name for o in store.list()] == ["pack0001"]
        assert store.sweep_incomplete(older_than=0) == 0
        assert store.sweep_incomplete(older_than=leftover.stat().st_mtime + 1) == 1
        assert not leftover.exists()
        assert store.get("pack0001") == b"x"

    def test_pieces_go_to_disk_before_commit(self, store: LocalBlockStore) -> None:
        pending = store.begin("pack0010")
        pending.write(b"on disk already")
        (temporary,) = store.root.glob("*/pack0010.pack.tmp-*")
        assert temporary.read_bytes() == b"on disk already"
        pending.commit()
        assert not temporary.exists()
        assert store.get("pack0010") == b"on disk already"
