"""The shipped tests of the Rebases Protocol: pending rebases and re-encoded blocks."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
)
from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.records import (
    CheckpointRecord,
)
from ckptstore.store.rebase import choose_rebase_parent
from ckptstore.testing.catalog.helpers import (
    ENTRY_HEADER,
    NOW,
    PACK_HEADER,
    TTL,
    CatalogFixture,
    bid,
    block,
    checkpoint,
    record,
    stored_block,
)


class RebaseTests(CatalogFixture):
    """Every test names the catalog fixture ``catalog``; it is a whole Catalog, and the
    tests here use the Rebases methods (and others only to set up or observe)."""

    def test_a_commit_with_slots_records_the_rebase_of_the_newest_ready_checkpoint(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 1, 2, 3, 4)
        assert (
            catalog.commit_checkpoint(
                checkpoint("old"),
                [(0, bid(1)), (1000, bid(2))],
                "h",
                ["w#0", None],
                choose_rebase_parent,
            )
            is None
        )  # the job's first checkpoint: nothing to rebase
        catalog.commit_checkpoint(
            checkpoint("elsewhere", job="job2", created=NOW + 2),
            [(0, bid(4))],
            "h",
            ["w#0"],
            choose_rebase_parent,
        )
        catalog.create_checkpoint(checkpoint("waiting", created=NOW + 3, status="pending"))
        catalog.replace_best(
            checkpoint("best", created=NOW + 3, type="best", parent_id="old"), None
        )
        parent = catalog.commit_checkpoint(
            checkpoint("new", created=NOW + 1),
            [(0, bid(3)), (1000, bid(2))],
            "h",
            ["w#0", "w#1"],
            choose_rebase_parent,
        )
        assert parent == "old"
        assert (
            catalog.commit_checkpoint(checkpoint("opaque", created=NOW + 4), [(0, bid(4))], "h")
            is None
        )
        assert catalog.pending_rebases() == [("new", "old")]
        assert catalog.stats().pending_rebases == 1
        assert {s: r.block_id for s, r in catalog.slots("new").items()} == {
            "w#0": bid(3),
            "w#1": bid(2),
        }
        assert {s: r.block_id for s, r in catalog.slots("old").items()} == {"w#0": bid(1)}
        with pytest.raises(CheckpointNotFound):
            catalog.slots("nope")
        catalog.finish_rebase("new")
        assert catalog.pending_rebases() == []

    def test_deleting_either_checkpoint_drops_its_pending_rebase(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        for name, n, created in (("a", 1, NOW), ("b", 2, NOW + 1), ("c", 1, NOW + 2)):
            catalog.commit_checkpoint(
                checkpoint(name, created=created), [(0, bid(n))], "h", ["w#0"], choose_rebase_parent
            )
        assert catalog.pending_rebases() == [("b", "a"), ("c", "b")]
        catalog.delete_checkpoint("b", NOW + 3)
        assert catalog.pending_rebases() == []

    def test_the_parent_rule_sees_the_jobs_other_ready_checkpoints_newest_first(
        self, catalog: Catalog
    ) -> None:
        seen: list[list[str]] = []

        def rule(others: Iterable[CheckpointRecord]) -> str | None:
            seen.append([c.checkpoint_id for c in others])
            return None

        for n in range(20):  # more than one page of candidates, where a backend pages
            catalog.commit_checkpoint(checkpoint(f"c{n:02}", created=NOW + n), [], "h")
        catalog.commit_checkpoint(checkpoint("tie", created=NOW + 19), [], "h")
        catalog.create_checkpoint(checkpoint("waiting", created=NOW + 30, status="pending"))
        catalog.commit_checkpoint(checkpoint("elsewhere", job="job2", created=NOW + 40), [], "h")
        catalog.commit_checkpoint(checkpoint("theirs", tenant_id="t", created=NOW + 40), [], "h")
        assert (
            catalog.commit_checkpoint(checkpoint("new", created=NOW + 50), [], "h", None, rule)
            is None
        )
        assert seen == [["tie", *(f"c{n:02}" for n in range(19, -1, -1))]]
        assert catalog.pending_rebases() == []  # the rule chose none

    def test_the_parent_rule_decides_within_the_commit(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("a", created=NOW), [], "h")
        catalog.commit_checkpoint(checkpoint("b", created=NOW + 1), [], "h")
        oldest = lambda others: list(others)[-1].checkpoint_id  # noqa: E731
        assert (
            catalog.commit_checkpoint(checkpoint("c", created=NOW + 2), [], "h", [], oldest) == "a"
        )
        assert catalog.pending_rebases() == [("c", "a")]
        with pytest.raises(CheckpointExists):  # a failed commit records no rebase either
            catalog.commit_checkpoint(checkpoint("c", created=NOW + 3), [], "h", [], oldest)
        assert catalog.pending_rebases() == [("c", "a")]

    def test_re_encoding_keeps_a_blocks_width(self, catalog: Catalog) -> None:
        catalog.add_pack("pack0001", 999, [record(1), record(2, width=4)], NOW, "h", NOW)
        old2 = stored_block(catalog, 2)
        new2 = block(bid(2), "pack0002", PACK_HEADER, 40, 1000, 3, bid(1), width=4)
        assert catalog.reencode_blocks("pack0002", 500, [(old2, new2)], NOW) == {bid(2)}
        assert stored_block(catalog, 2).width == 4

    def test_rebase_repoints_whole_blocks_onto_whole_bases(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2, 3)
        old1, old2 = stored_block(catalog, 1), stored_block(catalog, 2)
        new1 = block(bid(1), "pack0002", PACK_HEADER, 40, 1000, 3, bid(2))
        catalog.commit_checkpoint(checkpoint("c", stored_bytes=150), [(0, bid(1))], "h")
        assert catalog.reencode_blocks("pack0002", 500, [(old1, new1)], NOW, "c") == {bid(1)}
        assert catalog.get_checkpoint("c").stored_bytes == 150 - 60  # 100 bytes became 40
        assert catalog.get_block(bid(1)) == new1
        assert catalog.deltas_on([bid(2), bid(3)]) == [new1]
        # nothing is made a delta on a delta
        onto_delta = block(bid(3), "pack0003", PACK_HEADER, 30, 1000, 3, bid(1))
        old3 = stored_block(catalog, 3)
        assert catalog.reencode_blocks("pack0003", 500, [(old3, onto_delta)], NOW) == set()
        assert {u.pack_id for u in catalog.pack_usage()} == {"pack0001", "pack0002"}
        # a delta is made whole again only as stored: not from a stale, whole view of it
        whole1 = block(bid(1), "pack0005", PACK_HEADER, 100, 1000, 2)
        assert catalog.reencode_blocks("pack0005", 500, [(old1, whole1)], NOW) == set()
        assert catalog.reencode_blocks("pack0005", 500, [(new1, whole1)], NOW) == {bid(1)}
        assert catalog.get_block(bid(1)) == whole1
        # a block that moved since it was read keeps its new place
        moved = block(bid(2), "pack0001", old2.offset + 8, 100, 1000, 1)
        new2 = block(bid(2), "pack0004", PACK_HEADER, 40, 1000, 3, bid(3))
        assert catalog.reencode_blocks("pack0004", 500, [(moved, new2)], NOW) == set()
        assert catalog.get_block(bid(2)) == old2

    def test_rebase_keeps_a_block_whole_once_the_bound_hangs_below_it(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 1, 2, 3, 4)  # 1 <- 2 <- 3 below 4: 3 becomes a delta on 4?
        for n, base in ((1, 2), (2, 3)):
            old = stored_block(catalog, n)
            new = block(bid(n), f"pack100{n}", PACK_HEADER, 40, 1000, 5, bid(base))
            assert catalog.reencode_blocks(f"pack100{n}", 500, [(old, new)], NOW) == {bid(n)}
        old3 = stored_block(catalog, 3)
        onto4 = block(bid(3), "pack2000", PACK_HEADER, 40, 1000, 5, bid(4))
        assert catalog.reencode_blocks("pack2000", 500, [(old3, onto4)], NOW, None, 2) == set()
        assert catalog.get_block(bid(3)) == old3  # two deltas hang below it already
        assert catalog.reencode_blocks("pack2000", 500, [(old3, onto4)], NOW, None, 3) == {bid(3)}

    def test_orphaned_deltas_are_those_in_use_on_bases_dead_past_the_cutoff(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 2, 4)
        size = PACK_HEADER + 2 * (ENTRY_HEADER + 100)
        deltas = [record(1, "pack0002", base=bid(2)), record(3, "pack0002", base=bid(4))]
        catalog.add_pack("pack0002", size, deltas, NOW, "h", NOW + TTL)
        catalog.commit_checkpoint(checkpoint("old"), [(0, bid(1)), (1000, bid(3))], "h")
        catalog.commit_checkpoint(
            checkpoint("new", created=NOW + 1), [(0, bid(2)), (1000, bid(4))], "h"
        )
        assert catalog.orphaned_deltas(NOW + 10) == []  # the bases are in use
        catalog.delete_checkpoint("new", NOW + 5)
        assert catalog.orphaned_deltas(NOW + 4) == []  # dead, but not for long enough
        catalog.lease_existing([bid(4)], "reader", NOW + TTL)
        assert catalog.orphaned_deltas(NOW + 10) == [catalog.get_block(bid(1))]
        catalog.delete_checkpoint("old", NOW + 6)
        assert catalog.orphaned_deltas(NOW + 10) == []  # no longer in use themselves

    def test_each_pending_rebase_is_claimed_by_one_owner_until_it_lapses(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 1, 2)
        slots: list[str | None] = ["t#0"]
        catalog.commit_checkpoint(checkpoint("a", created=NOW), [(0, bid(1))], "h", slots)
        rule = choose_rebase_parent
        for name, created in (("b", NOW + 1), ("c", NOW + 2)):
            catalog.commit_checkpoint(
                checkpoint(name, created=created), [(0, bid(2))], "h", slots, rule
            )
        assert catalog.claim_rebase("p1", NOW + 100, NOW) == ("b", "a")  # oldest first
        assert catalog.claim_rebase("p2", NOW + 100, NOW, "b") is None  # held by p1
        assert catalog.claim_rebase("p1", NOW + 100, NOW, "b") is None  # not twice either
        assert catalog.claim_rebase("p2", NOW + 100, NOW) == ("c", "b")
        assert catalog.claim_rebase("p3", NOW + 100, NOW) is None  # all held
        assert catalog.claim_rebase("p3", NOW + 200, NOW + 101) == ("b", "a")  # p1's lapsed
        catalog.finish_rebase("b")
        assert catalog.claim_rebase("p3", NOW + 300, NOW + 201) == ("c", "b")
        assert catalog.pending_rebases() == [("c", "b")]  # claimed, not finished
