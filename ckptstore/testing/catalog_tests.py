"""CatalogTests: the behaviour every Catalog backend must show.

Subclass in ``tests/conformance/`` and provide a ``catalog`` fixture that
returns an empty catalog.
"""

from __future__ import annotations

import pytest

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CheckpointNotReady,
    CheckpointPinned,
    MissingBlockError,
)
from ckptstore.store.catalog.base import (
    ApiKeyRecord,
    BlockRecord,
    Catalog,
    CheckpointRecord,
    EndpointRecord,
    ListQuery,
)
from ckptstore.store.packs.format import ENTRY, HEADER

NOW = 1_700_000_000.0
TTL = 3600.0


def bid(n: int) -> bytes:
    return n.to_bytes(32, "big")


def record(n: int, pack: str = "pack0001", stored: int = 100, base: bytes | None = None):
    return BlockRecord(bid(n), pack, HEADER.size + (n % 100) * 200, stored, 1000, 1, base)


def checkpoint(cid: str, job: str = "job", created: float = NOW, **kw) -> CheckpointRecord:
    fields = dict(
        checkpoint_id=cid,
        job_id=job,
        type="automatic",
        name=cid,
        description=None,
        epoch=None,
        step=None,
        metrics={},
        status="ready",
        size_bytes=1000,
        stored_bytes=0,
        created_at=created,
    )
    fields.update(kw)
    return CheckpointRecord(**fields)


class CatalogTests:
    def add(self, catalog: Catalog, *numbers: int, holder: str = "h", pack: str = "pack0001"):
        blocks = [record(n, pack) for n in numbers]
        size = HEADER.size + sum(ENTRY.size + b.stored_len for b in blocks)
        return catalog.add_pack(pack, size, blocks, NOW, holder, NOW + TTL)

    def test_settings_first_value_wins(self, catalog: Catalog) -> None:
        assert catalog.get_setting("k") is None
        assert catalog.set_setting_if_absent("k", "a") == "a"
        assert catalog.set_setting_if_absent("k", "b") == "a"
        assert catalog.get_setting("k") == "a"

    def test_add_pack_reports_new_blocks_and_keeps_first_location(self, catalog: Catalog) -> None:
        assert self.add(catalog, 1, 2) == 2
        assert self.add(catalog, 2, 3, pack="pack0002") == 1
        assert catalog.get_block(bid(2)).pack_id == "pack0001"
        assert catalog.get_block(bid(3)).pack_id == "pack0002"

    def test_commit_makes_checkpoint_and_manifest_visible(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(
            checkpoint("c1"), [(0, bid(1)), (1000, bid(2)), (2000, bid(1))], "h"
        )
        assert catalog.get_checkpoint("c1").name == "c1"
        manifest = catalog.manifest("c1")
        assert [(off, rec.block_id) for off, rec in manifest] == [
            (0, bid(1)),
            (1000, bid(2)),
            (2000, bid(1)),
        ]

    def test_commit_with_missing_block_changes_nothing(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        with pytest.raises(MissingBlockError) as info:
            catalog.commit_checkpoint(checkpoint("c1"), [(0, bid(1)), (1000, bid(9))], "h")
        assert info.value.block_ids == [bid(9).hex()]
        with pytest.raises(CheckpointNotFound):
            catalog.get_checkpoint("c1")
        catalog.release_leases("h")
        # block 1 got no reference from the failed commit: it is garbage after the grace
        assert [b.block_id for b in catalog.remove_dead_blocks(NOW + 10, 5)] == [bid(1)]

    def test_commit_of_existing_id_raises_and_keeps_the_first(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        catalog.commit_checkpoint(checkpoint("c1"), [(0, bid(1))], "h")
        with pytest.raises(CheckpointExists):
            catalog.commit_checkpoint(
                checkpoint("c1", name="other"), [(0, bid(1)), (0, bid(1))], "h"
            )
        assert catalog.get_checkpoint("c1").name == "c1"
        assert len(catalog.manifest("c1")) == 1
        catalog.delete_checkpoint("c1", NOW)
        assert len(catalog.remove_dead_blocks(NOW + 1, 0)) == 1  # refcount went back to 0

    def test_a_commit_with_slots_records_the_rebase_of_the_newest_ready_checkpoint(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 1, 2, 3, 4)
        assert (
            catalog.commit_checkpoint(
                checkpoint("old"), [(0, bid(1)), (1000, bid(2))], "h", ["w#0", None]
            )
            is None
        )  # the job's first checkpoint: nothing to rebase
        catalog.commit_checkpoint(
            checkpoint("elsewhere", job="job2", created=NOW + 2), [(0, bid(4))], "h", ["w#0"]
        )
        catalog.create_checkpoint(checkpoint("waiting", created=NOW + 3, status="pending"))
        catalog.replace_best(
            checkpoint("best", created=NOW + 3, type="best", parent_id="old"), None
        )
        parent = catalog.commit_checkpoint(
            checkpoint("new", created=NOW + 1), [(0, bid(3)), (1000, bid(2))], "h", ["w#0", "w#1"]
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
        catalog.commit_checkpoint(checkpoint("a"), [(0, bid(1))], "h", ["w#0"])
        catalog.commit_checkpoint(checkpoint("b", created=NOW + 1), [(0, bid(2))], "h", ["w#0"])
        catalog.commit_checkpoint(checkpoint("c", created=NOW + 2), [(0, bid(1))], "h", ["w#0"])
        assert catalog.pending_rebases() == [("b", "a"), ("c", "b")]
        catalog.delete_checkpoint("b", NOW + 3)
        assert catalog.pending_rebases() == []

    def test_unreferenced_names_the_blocks_no_checkpoint_holds(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2, 3)
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1))], "h")
        found = catalog.unreferenced([bid(1), bid(2), bid(2), bid(3), bid(9)])
        assert sorted(r.block_id for r in found) == [bid(2), bid(3)]

    def test_slots_must_match_the_manifest(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        with pytest.raises(ValueError):
            catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1))], "h", ["a", "b"])
        with pytest.raises(CheckpointNotFound):
            catalog.get_checkpoint("c")

    def test_empty_manifest_commits(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("empty", size_bytes=0), [], "h")
        assert catalog.manifest("empty") == []

    def test_leased_block_is_not_removed(self, catalog: Catalog) -> None:
        self.add(catalog, 1, holder="upload")
        assert catalog.remove_dead_blocks(NOW + TTL - 1, 0) == []
        assert [b.block_id for b in catalog.remove_dead_blocks(NOW + TTL + 1, 0)] == [bid(1)]

    def test_lease_existing_returns_and_protects_present_blocks(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.release_leases("h")
        present = catalog.lease_existing([bid(1), bid(5)], "u2", NOW + 50)
        assert present == {bid(1)}
        removed = {b.block_id for b in catalog.remove_dead_blocks(NOW + 10, 0)}
        assert removed == {bid(2)}
        catalog.renew_leases("u2", NOW + 500)
        assert catalog.remove_dead_blocks(NOW + 100, 0) == []
        catalog.release_leases("u2")
        assert [b.block_id for b in catalog.remove_dead_blocks(NOW + 100, 0)] == [bid(1)]

    def test_leased_to_reports_a_holders_leases(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2, holder="u1")
        catalog.lease_existing([bid(2)], "u2", NOW + TTL)
        assert catalog.leased_to("u1", [bid(1), bid(2), bid(3)]) == {bid(1), bid(2)}
        assert catalog.leased_to("u2", [bid(1), bid(2)]) == {bid(2)}

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

    def test_delete_unknown_checkpoint_raises(self, catalog: Catalog) -> None:
        with pytest.raises(CheckpointNotFound):
            catalog.delete_checkpoint("nope", NOW)

    def test_base_block_lives_while_a_delta_names_it(self, catalog: Catalog) -> None:
        base = record(1)
        delta = record(2, base=bid(1))
        size = HEADER.size + 2 * (ENTRY.size + 100)
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

    def test_list_sorts_by_field_and_metric_missing_last(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(
            checkpoint("a", created=NOW + 1, epoch=3, metrics={"v": 0.5}), [], "h"
        )
        catalog.commit_checkpoint(
            checkpoint("b", created=NOW + 2, epoch=1, metrics={"v": 0.2}), [], "h"
        )
        catalog.commit_checkpoint(checkpoint("c", created=NOW + 3, epoch=2), [], "h")
        catalog.commit_checkpoint(checkpoint("other", job="job2", created=NOW), [], "h")

        def ids(sort_by: str, desc: bool, limit: int | None = None) -> list[str]:
            page, total = catalog.list_checkpoints(ListQuery("", "job", sort_by, desc, limit))
            assert total == 3
            return [r.checkpoint_id for r in page]

        assert ids("createdAt", True) == ["c", "b", "a"]
        assert ids("epoch", False) == ["b", "c", "a"]
        assert ids("v", False) == ["b", "a", "c"]
        assert ids("v", True) == ["a", "b", "c"]
        assert ids("createdAt", False, limit=2) == ["a", "b"]
        assert catalog.metric_keys("", "job") == ["v"]
        assert catalog.list_jobs("") == ["job", "job2"]

    def test_relocate_moves_blocks_and_forgets_old_pack(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1)), (1000, bid(2))], "h")
        moved = [
            BlockRecord(bid(n), "pack0009", 16 + i * 176, 100, 1000, 1)
            for i, n in enumerate((1, 2))
        ]
        catalog.relocate_blocks("pack0001", "pack0009", 368, moved, NOW)
        assert {u.pack_id for u in catalog.pack_usage()} == {"pack0009"}
        assert catalog.get_block(bid(2)).offset == 16 + 176
        assert catalog.blocks_in_pack("pack0009") == [
            catalog.get_block(bid(1)),
            catalog.get_block(bid(2)),
        ]

    def test_pack_usage_counts_live_entry_bytes(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        (usage,) = catalog.pack_usage()
        assert usage.live_bytes == 2 * (ENTRY.size + 100)
        assert usage.size == HEADER.size + usage.live_bytes
        catalog.release_leases("h")
        catalog.remove_dead_blocks(NOW + 1, 0)
        assert catalog.pack_usage()[0].live_bytes == 0
        catalog.remove_pack("pack0001")
        assert catalog.pack_usage() == []

    def test_pack_usage_of_some_packs(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        self.add(catalog, 3, pack="pack0002")
        (usage,) = catalog.pack_usage(["pack0002", "no such pack"])
        assert usage.pack_id == "pack0002" and usage.live_bytes == ENTRY.size + 100
        assert catalog.pack_usage([]) == []
        assert [u.pack_id for u in catalog.pack_usage()] == ["pack0001", "pack0002"]

    def test_remove_pack_keeps_a_pack_that_blocks_point_at(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        assert catalog.remove_pack("pack0001") is False
        assert [u.pack_id for u in catalog.pack_usage()] == ["pack0001"]

    def test_rebase_repoints_whole_blocks_onto_whole_bases(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2, 3)
        old1, old2 = catalog.get_block(bid(1)), catalog.get_block(bid(2))
        new1 = BlockRecord(bid(1), "pack0002", HEADER.size, 40, 1000, 3, bid(2))
        catalog.commit_checkpoint(checkpoint("c", stored_bytes=150), [(0, bid(1))], "h")
        assert catalog.reencode_blocks("pack0002", 500, [(old1, new1)], NOW, "c") == {bid(1)}
        assert catalog.get_checkpoint("c").stored_bytes == 150 - 60  # 100 bytes became 40
        assert catalog.get_block(bid(1)) == new1
        assert catalog.deltas_on([bid(2), bid(3)]) == [new1]
        # nothing is made a delta on a delta
        onto_delta = BlockRecord(bid(3), "pack0003", HEADER.size, 30, 1000, 3, bid(1))
        old3 = catalog.get_block(bid(3))
        assert catalog.reencode_blocks("pack0003", 500, [(old3, onto_delta)], NOW) == set()
        assert {u.pack_id for u in catalog.pack_usage()} == {"pack0001", "pack0002"}
        # a delta is made whole again only as stored: not from a stale, whole view of it
        whole1 = BlockRecord(bid(1), "pack0005", HEADER.size, 100, 1000, 2)
        assert catalog.reencode_blocks("pack0005", 500, [(old1, whole1)], NOW) == set()
        assert catalog.reencode_blocks("pack0005", 500, [(new1, whole1)], NOW) == {bid(1)}
        assert catalog.get_block(bid(1)) == whole1
        # a block that moved since it was read keeps its new place
        moved = BlockRecord(bid(2), "pack0001", old2.offset + 8, 100, 1000, 1)
        new2 = BlockRecord(bid(2), "pack0004", HEADER.size, 40, 1000, 3, bid(3))
        assert catalog.reencode_blocks("pack0004", 500, [(moved, new2)], NOW) == set()
        assert catalog.get_block(bid(2)) == old2

    def test_rebase_keeps_a_block_whole_once_the_bound_hangs_below_it(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 1, 2, 3, 4)  # 1 <- 2 <- 3 below 4: 3 becomes a delta on 4?
        for n, base in ((1, 2), (2, 3)):
            old = catalog.get_block(bid(n))
            new = BlockRecord(bid(n), f"pack100{n}", HEADER.size, 40, 1000, 5, bid(base))
            assert catalog.reencode_blocks(f"pack100{n}", 500, [(old, new)], NOW) == {bid(n)}
        old3 = catalog.get_block(bid(3))
        onto4 = BlockRecord(bid(3), "pack2000", HEADER.size, 40, 1000, 5, bid(4))
        assert catalog.reencode_blocks("pack2000", 500, [(old3, onto4)], NOW, None, 2) == set()
        assert catalog.get_block(bid(3)) == old3  # two deltas hang below it already
        assert catalog.reencode_blocks("pack2000", 500, [(old3, onto4)], NOW, None, 3) == {bid(3)}

    def test_orphaned_deltas_are_those_in_use_on_bases_dead_past_the_cutoff(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 2, 4)
        size = HEADER.size + 2 * (ENTRY.size + 100)
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

    def test_get_blocks_returns_present_only(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        assert set(catalog.get_blocks([bid(1), bid(2), bid(3)])) == {bid(1), bid(2)}

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

    # -- tenants, pending checkpoints, best copies ---------------------------------
    def test_pending_checkpoint_is_filled_once(self, catalog: Catalog) -> None:
        catalog.create_checkpoint(checkpoint("p", status="pending", size_bytes=0, tenant_id="t"))
        with pytest.raises(CheckpointExists):
            catalog.create_checkpoint(checkpoint("p", tenant_id="t"))
        self.add(catalog, 1)
        filled = checkpoint("p", status="ready", size_bytes=1000, tenant_id="t")
        catalog.commit_checkpoint(filled, [(0, bid(1))], "h")
        assert catalog.get_checkpoint("p").status == "ready"
        assert len(catalog.manifest("p")) == 1
        with pytest.raises(CheckpointExists):
            catalog.commit_checkpoint(filled, [(0, bid(1))], "h")

    def test_pending_checkpoint_of_another_tenant_is_not_filled(self, catalog: Catalog) -> None:
        catalog.create_checkpoint(checkpoint("p", status="pending", tenant_id="a"))
        with pytest.raises(CheckpointExists):
            catalog.commit_checkpoint(checkpoint("p", tenant_id="b"), [], "h")

    def test_replace_best_shares_blocks_and_drops_old_best(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("src"), [(0, bid(1)), (1000, bid(2))], "h")
        catalog.replace_best(checkpoint("best1", type="best", parent_id="src"), None)
        catalog.replace_best(checkpoint("best2", type="best", parent_id="src"), "best1")
        with pytest.raises(CheckpointNotFound):
            catalog.get_checkpoint("best1")
        assert [r.block_id for _, r in catalog.manifest("best2")] == [bid(1), bid(2)]
        catalog.delete_checkpoint("src", NOW)
        assert catalog.remove_dead_blocks(NOW + 1, 0) == []  # best2 still holds them
        catalog.delete_checkpoint("best2", NOW)
        assert len(catalog.remove_dead_blocks(NOW + 1, 0)) == 2

    def test_lists_and_jobs_are_per_tenant(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("a1", tenant_id="a", metrics={"m": 1.0}), [], "h")
        catalog.commit_checkpoint(checkpoint("b1", tenant_id="b"), [], "h")
        page, total = catalog.list_checkpoints(ListQuery("a", "job", "createdAt", True, None))
        assert [r.checkpoint_id for r in page] == ["a1"] and total == 1
        assert catalog.list_jobs("b") == ["job"] and catalog.metric_keys("b", "job") == []
        assert catalog.job_totals("a", "job") == (1, 1000)
        assert catalog.job_totals("a", "nope") == (0, 0)
        assert catalog.tenant_totals("a") == (1, 1000, 0)

    def test_job_extremes_are_the_newest_best_and_newest_overall(self, catalog: Catalog) -> None:
        assert catalog.job_extremes("", "job") == (None, None)
        catalog.commit_checkpoint(checkpoint("b1", type="best", created=NOW + 1), [], "h")
        catalog.commit_checkpoint(checkpoint("a1", created=NOW + 2), [], "h")
        best, latest = catalog.job_extremes("", "job")
        assert (best.checkpoint_id, latest.checkpoint_id) == ("b1", "a1")

    def test_list_filters_by_type(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("a", type="automatic"), [], "h")
        catalog.commit_checkpoint(checkpoint("f", type="final"), [], "h")
        query = ListQuery("", "job", "createdAt", True, None, types=("final",))
        assert [r.checkpoint_id for r in catalog.list_checkpoints(query)[0]] == ["f"]

    def test_lease_visible_hides_other_tenants_blocks(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("a", tenant_id="a"), [(0, bid(1))], "h")
        catalog.commit_checkpoint(checkpoint("b", tenant_id="b"), [(0, bid(2))], "h")
        assert catalog.lease_visible([bid(1), bid(2)], "a", "u", NOW + TTL) == {bid(1)}

    # -- endpoints, job settings, API keys --------------------------------------
    def endpoint(self, endpoint_id: str, checkpoint_id: str, tenant: str = "") -> EndpointRecord:
        return EndpointRecord(
            endpoint_id, tenant, "ep", checkpoint_id, ["rtx-4090"], 1, "ready", NOW
        )

    def test_endpoint_pins_its_checkpoint(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("c"), [], "h")
        catalog.add_endpoint(self.endpoint("ep1", "c"))
        with pytest.raises(CheckpointPinned) as info:
            catalog.delete_checkpoint("c", NOW)
        assert info.value.endpoint_ids == ["ep1"]
        assert catalog.get_endpoint("ep1").gpu_ids == ["rtx-4090"]
        assert [e.endpoint_id for e in catalog.list_endpoints("")] == ["ep1"]
        assert catalog.delete_endpoint("ep1") and not catalog.delete_endpoint("ep1")
        catalog.delete_checkpoint("c", NOW)

    def test_endpoint_needs_a_ready_checkpoint_of_its_tenant(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("c", tenant_id="a"), [], "h")
        catalog.create_checkpoint(checkpoint("p", status="pending", tenant_id="a"))
        with pytest.raises(CheckpointNotFound):
            catalog.add_endpoint(self.endpoint("ep", "c", tenant="b"))
        with pytest.raises(CheckpointNotReady):
            catalog.add_endpoint(self.endpoint("ep", "p", tenant="a"))

    def test_job_settings_round_trip(self, catalog: Catalog) -> None:
        assert catalog.job_settings("t", "job") == {}
        catalog.set_job_settings("t", "job", {"keepAutomatic": 3}, NOW)
        catalog.set_job_settings("t", "job", {"keepAutomatic": 5}, NOW)
        assert catalog.job_settings("t", "job") == {"keepAutomatic": 5}
        assert catalog.job_settings("other", "job") == {}

    def test_api_keys_map_to_tenants_until_revoked(self, catalog: Catalog) -> None:
        catalog.add_api_key(ApiKeyRecord("k1", "acme", "ci", NOW, None), b"hash-1")
        assert catalog.tenant_for_key(b"hash-1") == "acme"
        assert catalog.tenant_for_key(b"hash-2") is None
        assert [k.key_id for k in catalog.list_api_keys()] == ["k1"]
        assert catalog.revoke_api_key("k1", NOW) and not catalog.revoke_api_key("k1", NOW)
        assert catalog.tenant_for_key(b"hash-1") is None
