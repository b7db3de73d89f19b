"""The shipped tests of the Maintenance Protocol: GC, verify queries and stats."""

from __future__ import annotations

import pytest

from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.records import (
    UNKNOWN_WIDTH,
)
from ckptstore.testing.catalog.helpers import (
    ENTRY_HEADER,
    NOW,
    PACK_HEADER,
    CatalogFixture,
    bid,
    block,
    checkpoint,
    record,
    stored_block,
)


class MaintenanceTests(CatalogFixture):
    """Every test names the catalog fixture ``catalog``; it is a whole Catalog, and the
    tests here use the Maintenance methods (and others only to set up or observe)."""

    def test_grace_period_protects_recently_dead_blocks(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        catalog.commit_checkpoint(checkpoint("c1"), [(0, bid(1))], "h")
        catalog.delete_checkpoint("c1", NOW + 100)
        assert catalog.remove_dead_blocks(NOW + 150, 60) == []
        assert len(catalog.remove_dead_blocks(NOW + 161, 60)) == 1

    def test_refcounts_follow_shared_blocks(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2, 3)
        catalog.commit_checkpoint(checkpoint("a"), [(0, bid(1)), (1000, bid(2))], "h")
        self.add(catalog, 3, pack="pack0002", holder="h2")
        catalog.commit_checkpoint(checkpoint("b"), [(0, bid(2)), (1000, bid(3))], "h2")
        catalog.delete_checkpoint("a", NOW)
        removed = {b.block_id for b in catalog.remove_dead_blocks(NOW + 1, 0)}
        assert removed == {bid(1)}
        assert catalog.manifest("b")[1][1].block_id == bid(3)

    def test_base_block_lives_while_a_delta_names_it(self, catalog: Catalog) -> None:
        base = record(1)
        delta = record(2, base=bid(1))
        size = PACK_HEADER + 2 * (ENTRY_HEADER + 100)
        catalog.add_pack("pack0001", size, [base, delta], NOW, "h", NOW)
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(2))], "h")
        assert catalog.remove_dead_blocks(NOW + 1, 0) == []
        catalog.delete_checkpoint("c", NOW)
        removed = [b.block_id for b in catalog.remove_dead_blocks(NOW + 1, 0)]
        assert sorted(removed) == [bid(1), bid(2)]

    def test_checkpoints_using_follows_deltas(self, catalog: Catalog) -> None:
        catalog.add_pack("pack0001", 999, [record(1), record(2, base=bid(1))], NOW, "h", NOW)
        catalog.commit_checkpoint(checkpoint("direct"), [(0, bid(1))], "h")
        catalog.commit_checkpoint(checkpoint("via_delta"), [(0, bid(2))], "h")
        assert catalog.checkpoints_using([bid(1)]) == {bid(1): ["direct", "via_delta"]}

    def test_relocate_moves_blocks_and_forgets_old_pack(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1)), (1000, bid(2))], "h")
        moved = [
            block(bid(n), "pack0009", 16 + i * 176, 100, 1000, 1) for i, n in enumerate((1, 2))
        ]
        catalog.relocate_blocks("pack0001", "pack0009", 368, moved, NOW)
        assert {u.pack_id for u in catalog.pack_usage()} == {"pack0009"}
        assert stored_block(catalog, 2).offset == 16 + 176
        assert catalog.blocks_in_pack("pack0009") == [
            catalog.get_block(bid(1)),
            catalog.get_block(bid(2)),
        ]

    def test_relocate_packs_merges_several_into_one(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        self.add(catalog, 3, pack="pack0002")
        self.add(catalog, 4, pack="pack0003")  # not merged
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1)), (1000, bid(3))], "h")
        at = [16 + i * 176 for i in range(3)]
        moves = {
            "pack0001": [
                block(bid(1), "pack0009", at[0], 100, 1000, 1),
                block(bid(2), "pack0009", at[1], 100, 1000, 1),
            ],
            "pack0002": [block(bid(3), "pack0009", at[2], 100, 1000, 1)],
        }
        catalog.relocate_packs(moves, "pack0009", 16 + 3 * 176, NOW)
        assert {u.pack_id for u in catalog.pack_usage()} == {"pack0003", "pack0009"}
        assert stored_block(catalog, 3).offset == at[2]
        assert [b.block_id for b in catalog.blocks_in_pack("pack0009")] == [bid(1), bid(2), bid(3)]
        assert catalog.pack_usage(["pack0009"])[0].live_bytes == 3 * 176

    def test_relocate_packs_refuses_to_forget_a_pack_still_used(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        moves = {"pack0001": [block(bid(1), "pack0009", 16, 100, 1000, 1)]}
        with pytest.raises(RuntimeError, match="not relocated"):
            catalog.relocate_packs(moves, "pack0009", 16 + 176, NOW)
        assert [u.pack_id for u in catalog.pack_usage()] == ["pack0001"]
        assert stored_block(catalog, 1).pack_id == "pack0001"

    def test_pack_usage_counts_live_entry_bytes(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        (usage,) = catalog.pack_usage()
        assert usage.live_bytes == 2 * (ENTRY_HEADER + 100)
        assert usage.size == PACK_HEADER + usage.live_bytes
        catalog.release_leases("h")
        catalog.remove_dead_blocks(NOW + 1, 0)
        assert catalog.pack_usage()[0].live_bytes == 0
        catalog.remove_pack("pack0001")
        assert catalog.pack_usage() == []

    def test_pack_usage_of_some_packs(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        self.add(catalog, 3, pack="pack0002")
        (usage,) = catalog.pack_usage(["pack0002", "no such pack"])
        assert usage.pack_id == "pack0002" and usage.live_bytes == ENTRY_HEADER + 100
        assert catalog.pack_usage([]) == []
        assert [u.pack_id for u in catalog.pack_usage()] == ["pack0001", "pack0002"]

    def test_remove_pack_keeps_a_pack_that_blocks_point_at(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        assert catalog.remove_pack("pack0001") is False
        assert [u.pack_id for u in catalog.pack_usage()] == ["pack0001"]

    def test_missing_manifest_blocks_empty_when_consistent(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1))], "h")
        assert catalog.missing_manifest_blocks() == []

    def test_manifest_gaps_name_entries_whose_span_is_not_their_length(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 1, 2)  # 1000 raw bytes each
        catalog.commit_checkpoint(
            checkpoint("good", size_bytes=2000), [(0, bid(1)), (1000, bid(2))], "h"
        )
        assert catalog.manifest_gaps() == []
        catalog.commit_checkpoint(
            checkpoint("bad", size_bytes=2500), [(0, bid(1)), (900, bid(2))], "h"
        )
        assert catalog.manifest_gaps() == [("bad", bid(1), 0, 900), ("bad", bid(2), 900, 1600)]

    def test_stats_sum_checkpoints_blocks_and_packs(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(
            checkpoint("c", size_bytes=2000), [(0, bid(1)), (1000, bid(2))], "h"
        )
        stats = catalog.stats()
        assert (stats.checkpoints, stats.logical_bytes, stats.blocks, stats.packs) == (
            1,
            2000,
            2,
            1,
        )
        assert stats.unique_raw_bytes == 2000

    def test_unknown_widths_are_listed_until_recorded(self, catalog: Catalog) -> None:
        legacy = [
            block(bid(n), "pack0001", 16 + n * 200, 100, 1000, 2, width=UNKNOWN_WIDTH)
            for n in (3, 1, 2)
        ]
        catalog.add_pack("pack0001", 999, [*legacy, record(4)], NOW, "h", NOW)
        assert [b.block_id for b in catalog.unknown_widths(b"", 2)] == [bid(1), bid(2)]
        assert [b.block_id for b in catalog.unknown_widths(bid(2), 2)] == [bid(3)]
        catalog.record_widths({bid(1): 4, bid(2): None, bid(4): 8})
        assert [b.block_id for b in catalog.unknown_widths(b"", 10)] == [bid(3)]
        assert stored_block(catalog, 1).width == 4 and stored_block(catalog, 2).width is None
        assert stored_block(catalog, 4).width is None  # known already: left as it was
