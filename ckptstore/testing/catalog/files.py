"""The shipped tests of the Files Protocol: the files of checkpoints and their digests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ckptstore.errors import CheckpointNotFound
from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.records import FileRecord
from ckptstore.testing.catalog.helpers import NOW, CatalogFixture, bid, checkpoint

TREE = [
    FileRecord("a.bin", 0, 1000, 0o600, "aa" * 32),
    FileRecord("sub/b.bin", 1000, 0, 0o644, None),
    FileRecord("sub/c.bin", 1000, 1000, 0o755, None),
]


class FileTests(CatalogFixture):
    def test_commit_records_files_in_order(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        tree = checkpoint("t", size_bytes=2000, layout="tree")
        catalog.commit_checkpoint(tree, [(0, bid(1)), (1000, bid(2))], "h", files=TREE)
        assert catalog.files("t") == TREE
        assert catalog.get_checkpoint("t").layout == "tree"

    def test_checkpoint_without_file_rows_has_none(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1))], "h")
        assert catalog.files("c") == []
        with pytest.raises(CheckpointNotFound):
            catalog.files("nope")

    def test_digests_fill_only_what_is_unknown(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        tree = checkpoint("t", size_bytes=2000, layout="tree")
        catalog.commit_checkpoint(tree, [(0, bid(1)), (1000, bid(2))], "h", files=TREE)
        assert catalog.undigested() == ["t"]
        digests = {"a.bin": "00" * 32, "sub/b.bin": "bb" * 32, "sub/c.bin": "cc" * 32}
        catalog.record_digests("t", digests, "dd" * 32)
        assert [f.sha256 for f in catalog.files("t")] == ["aa" * 32, "bb" * 32, "cc" * 32]
        assert catalog.get_checkpoint("t").sha256 == "dd" * 32
        assert catalog.undigested() == []

    def test_best_copy_shares_files_and_delete_drops_them(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        tree = checkpoint("t", size_bytes=2000, layout="tree", sha256="ee" * 32)
        catalog.commit_checkpoint(tree, [(0, bid(1)), (1000, bid(2))], "h", files=TREE)
        best = replace(tree, checkpoint_id="best", type="best", parent_id="t")
        catalog.replace_best(best, None)
        catalog.delete_checkpoint("t", NOW)
        assert catalog.files("best") == TREE
        assert catalog.get_checkpoint("best").sha256 == "ee" * 32
        catalog.delete_checkpoint("best", NOW)
        with pytest.raises(CheckpointNotFound):
            catalog.files("best")
        # a checkpoint of the same id later starts with no files of the old one's
        catalog.commit_checkpoint(checkpoint("best"), [(0, bid(1))], "h")
        assert catalog.files("best") == []

    def test_a_copy_made_after_the_digest_has_it(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        tree = checkpoint("t", size_bytes=2000, layout="tree")
        catalog.commit_checkpoint(tree, [(0, bid(1)), (1000, bid(2))], "h", files=TREE)
        catalog.replace_best(
            replace(tree, checkpoint_id="before", type="best", parent_id="t"), None
        )
        digests = {"sub/b.bin": "bb" * 32, "sub/c.bin": "cc" * 32}
        catalog.record_digests("t", digests, "dd" * 32)
        after = replace(tree, checkpoint_id="after", type="best", parent_id="t")
        catalog.replace_best(after, "before")
        for cid in ("t", "after"):
            assert catalog.get_checkpoint(cid).sha256 == "dd" * 32
            assert [f.sha256 for f in catalog.files(cid)] == ["aa" * 32, "bb" * 32, "cc" * 32]
        assert catalog.undigested() == []

    def test_a_copy_made_before_the_digest_gets_it_too(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        tree = checkpoint("t", size_bytes=2000, layout="tree")
        catalog.commit_checkpoint(tree, [(0, bid(1)), (1000, bid(2))], "h", files=TREE)
        catalog.replace_best(replace(tree, checkpoint_id="copy", type="best", parent_id="t"), None)
        assert catalog.get_checkpoint("copy").sha256 is None
        catalog.record_digests("t", {"sub/b.bin": "bb" * 32, "sub/c.bin": "cc" * 32}, "dd" * 32)
        assert catalog.get_checkpoint("copy").sha256 == "dd" * 32
        assert [f.sha256 for f in catalog.files("copy")] == ["aa" * 32, "bb" * 32, "cc" * 32]
