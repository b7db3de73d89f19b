"""The shipped tests of the Checkpoints Protocol: checkpoints, manifests, jobs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    InvalidArgument,
    MissingBlockError,
)
from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.records import (
    JobListing,
    ListQuery,
)
from ckptstore.testing.catalog.helpers import (
    NOW,
    CatalogFixture,
    bid,
    checkpoint,
    present,
)


class CheckpointTests(CatalogFixture):
    """Every test names the catalog fixture ``catalog``; it is a whole Catalog, and the
    tests here use the Checkpoints methods (and others only to set up or observe)."""

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

    def test_slots_must_match_the_manifest(self, catalog: Catalog) -> None:
        self.add(catalog, 1)
        with pytest.raises(ValueError):
            catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1))], "h", ["a", "b"])
        with pytest.raises(CheckpointNotFound):
            catalog.get_checkpoint("c")

    def test_empty_manifest_commits(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("empty", size_bytes=0), [], "h")
        assert catalog.manifest("empty") == []

    def test_delete_unknown_checkpoint_raises(self, catalog: Catalog) -> None:
        with pytest.raises(CheckpointNotFound):
            catalog.delete_checkpoint("nope", NOW)

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
            page, total, _ = catalog.list_checkpoints(ListQuery("", "job", sort_by, desc, limit))
            assert total == 3
            return [r.checkpoint_id for r in page]

        assert ids("createdAt", True) == ["c", "b", "a"]
        assert ids("epoch", False) == ["b", "c", "a"]
        assert ids("v", False) == ["b", "a", "c"]
        assert ids("v", True) == ["a", "b", "c"]
        assert ids("createdAt", False, limit=2) == ["a", "b"]
        assert catalog.metric_keys("", "job") == ["v"]
        assert catalog.list_jobs("") == ["job", "job2"]

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

    def test_a_deleted_pending_checkpoint_is_not_filled(self, catalog: Catalog) -> None:
        catalog.create_checkpoint(checkpoint("p", status="pending", size_bytes=0, tenant_id="t"))
        self.add(catalog, 1)
        catalog.delete_checkpoint("p", NOW)
        filled = checkpoint("p", status="ready", size_bytes=1000, tenant_id="t")
        with pytest.raises(CheckpointNotFound):
            catalog.commit_checkpoint(filled, [(0, bid(1))], "h", fills_pending=True)
        with pytest.raises(CheckpointNotFound):
            catalog.get_checkpoint("p")
        assert catalog.unreferenced([bid(1)])  # the references were rolled back

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

    def test_best_copies_outlive_the_checkpoint_they_share_blocks_with(
        self, catalog: Catalog
    ) -> None:
        self.add(catalog, 1, 2, 3)
        catalog.commit_checkpoint(
            checkpoint("src"), [(0, bid(1)), (1000, bid(2))], "h", slots=["w#0", None]
        )
        catalog.commit_checkpoint(checkpoint("other"), [(0, bid(3))], "h")
        catalog.replace_best(checkpoint("copy1", type="best", parent_id="src"), None)
        catalog.replace_best(checkpoint("copy2", type="best", parent_id="src"), None)
        catalog.delete_checkpoint("src", NOW)
        for copy in ("copy1", "copy2"):
            assert [(o, r.block_id) for o, r in catalog.manifest(copy)] == [
                (0, bid(1)),
                (1000, bid(2)),
            ]
            assert list(catalog.slots(copy)) == ["w#0"]
        assert catalog.checkpoints_using([bid(2)]) == {bid(2): ["copy1", "copy2"]}
        catalog.delete_checkpoint("copy1", NOW)
        assert [r.block_id for _, r in catalog.manifest("copy2")] == [bid(1), bid(2)]
        assert catalog.remove_dead_blocks(NOW + 1, 0) == []
        catalog.delete_checkpoint("copy2", NOW)
        removed = catalog.remove_dead_blocks(NOW + 1, 0)
        assert sorted(r.block_id for r in removed) == [bid(1), bid(2)]
        assert catalog.get_block(bid(3)) is not None

    def test_a_best_copy_of_a_deleted_checkpoint_is_refused(self, catalog: Catalog) -> None:
        with pytest.raises(CheckpointNotFound):
            catalog.replace_best(checkpoint("copy", type="best", parent_id="gone"), None)
        with pytest.raises(CheckpointNotFound):
            catalog.get_checkpoint("copy")

    def test_lists_and_jobs_are_per_tenant(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("a1", tenant_id="a", metrics={"m": 1.0}), [], "h")
        catalog.commit_checkpoint(checkpoint("b1", tenant_id="b"), [], "h")
        page, total, _ = catalog.list_checkpoints(ListQuery("a", "job", "createdAt", True, None))
        assert [r.checkpoint_id for r in page] == ["a1"] and total == 1
        assert catalog.list_jobs("b") == ["job"] and catalog.metric_keys("b", "job") == []
        assert catalog.job_totals("a", "job") == (1, 1000)
        assert catalog.job_totals("a", "nope") == (0, 0)
        assert catalog.tenant_totals("a") == (1, 1000, 0)

    def test_job_totals_follow_commits_fills_copies_and_deletes(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("c1", size_bytes=1000), [(0, bid(1))], "h")
        catalog.create_checkpoint(checkpoint("c2", status="pending", size_bytes=0))
        assert catalog.job_totals("", "job") == (2, 1000)
        filled = checkpoint("c2", size_bytes=2000, created=NOW + 1)
        catalog.commit_checkpoint(filled, [(0, bid(1)), (1000, bid(2))], "h", fills_pending=True)
        assert catalog.job_totals("", "job") == (2, 3000)
        catalog.replace_best(checkpoint("b", type="best", parent_id="c2", size_bytes=2000), None)
        assert catalog.job_totals("", "job") == (3, 5000)
        catalog.delete_checkpoint("c1", NOW)
        assert catalog.job_totals("", "job") == (2, 4000)
        assert catalog.job_totals("", "other") == (0, 0)

    def test_job_extremes_are_the_newest_best_and_newest_overall(self, catalog: Catalog) -> None:
        assert catalog.job_extremes("", "job") == (None, None)
        catalog.commit_checkpoint(checkpoint("b1", type="best", created=NOW + 1), [], "h")
        catalog.commit_checkpoint(checkpoint("a1", created=NOW + 2), [], "h")
        best, latest = catalog.job_extremes("", "job")
        assert present(best, "best checkpoint").checkpoint_id == "b1"
        assert present(latest, "latest checkpoint").checkpoint_id == "a1"

    def test_job_listing_is_the_page_extremes_and_totals_of_the_tenants_job(
        self, catalog: Catalog
    ) -> None:
        kinds = ["manual", "best", "automatic", "best", "final", "manual", "automatic"]
        for i, kind in enumerate(kinds):
            for tenant, job in (("a", "job"), ("b", "job"), ("a", "other")):
                metrics = {"loss": float(i % 3)} if i % 2 else {}
                catalog.commit_checkpoint(
                    checkpoint(
                        f"{tenant}-{job}-{i}",
                        job,
                        created=NOW + i // 2,
                        tenant_id=tenant,
                        type=kind,
                        epoch=None if i == 3 else i % 4,
                        size_bytes=1000 + i + (50 if tenant == "b" else 0),
                        metrics=metrics,
                    ),
                    [],
                    "h",
                )
        for sort_by in ("createdAt", "epoch", "step", "loss"):
            for descending in (True, False):
                for types in (None, ("best", "manual"), ("final",), ("pending",)):
                    for limit in (2, 3, None):
                        query = ListQuery("a", "job", sort_by, descending, limit, types)
                        self._assert_listing(catalog, query)
                        cursor = catalog.list_checkpoints(query)[2]
                        if cursor is not None:
                            self._assert_listing(catalog, replace(query, cursor=cursor))
        for tenant, job in (("b", "other"), ("c", "job"), ("a", "never")):
            listing = catalog.job_listing(ListQuery(tenant, job, "createdAt", True, 5))
            assert listing == JobListing([], 0, None, None, None, 0, 0)

    def _assert_listing(self, catalog: Catalog, query: ListQuery) -> None:
        page, matching, cursor = catalog.list_checkpoints(query)
        listing = catalog.job_listing(query)
        best, latest = catalog.job_extremes(query.tenant_id, query.job_id)
        count, size = catalog.job_totals(query.tenant_id, query.job_id)
        assert listing == JobListing(page, matching, cursor, best, latest, count, size), query
        assert all(r.tenant_id == "a" and r.job_id == "job" for r in listing.checkpoints)
        assert present(listing.best, "best").checkpoint_id == "a-job-3"
        assert (count, size) == (7, 7021)

    def test_list_filters_by_type(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("a", type="automatic"), [], "h")
        catalog.commit_checkpoint(checkpoint("f", type="final"), [], "h")
        query = ListQuery("", "job", "createdAt", True, None, types=("final",))
        assert [r.checkpoint_id for r in catalog.list_checkpoints(query)[0]] == ["f"]

    def test_job_settings_round_trip(self, catalog: Catalog) -> None:
        assert catalog.job_settings("t", "job") == {}
        catalog.set_job_settings("t", "job", {"keepAutomatic": 3}, NOW)
        catalog.set_job_settings("t", "job", {"keepAutomatic": 5}, NOW)
        assert catalog.job_settings("t", "job") == {"keepAutomatic": 5}
        assert catalog.job_settings("other", "job") == {}

    @pytest.mark.parametrize(
        "sort_by, descending",
        [("createdAt", True), ("createdAt", False), ("epoch", True), ("m", False), ("m", True)],
    )
    def test_pages_by_cursor_cover_the_listing_once_despite_inserts(
        self, catalog: Catalog, sort_by: str, descending: bool
    ) -> None:
        # ties in every key (same epoch, same metric, same instant) and some lacking it
        for n in range(23):
            metrics = {"m": float(n % 4)} if n % 5 else {}
            created = NOW + n // 3
            record = checkpoint(f"c{n:02d}", created=created, epoch=n // 6, metrics=metrics)
            catalog.commit_checkpoint(record, [], "h")
        whole, total, cursor = catalog.list_checkpoints(
            ListQuery("", "job", sort_by, descending, None)
        )
        assert total == 23 and cursor is None
        expected = [r.checkpoint_id for r in whole]
        seen: list[str] = []
        cursor = None
        while True:
            page, total, cursor = catalog.list_checkpoints(
                ListQuery("", "job", sort_by, descending, 4, cursor=cursor)
            )
            seen += [r.checkpoint_id for r in page]
            if len(seen) == 8:  # a newer checkpoint arrives between pages
                catalog.commit_checkpoint(checkpoint("late", created=NOW + 99), [], "h")
            if cursor is None:
                break
        assert [i for i in seen if i != "late"] == expected
        assert seen.count("late") <= 1 and len(seen) == len(set(seen))

    @pytest.mark.parametrize("descending", [False, True])
    def test_metric_order_and_counts_follow_commits_fills_and_deletes(
        self, catalog: Catalog, descending: bool
    ) -> None:
        # the model: (checkpoint, type, created, metric or None), in insertion order
        model: list[tuple[str, str, float, float | None]] = []
        catalog.create_checkpoint(checkpoint("p", status="pending", created=NOW + 2))
        model.append(("p", "automatic", NOW + 2, None))
        for n in range(30):
            kind = "best" if n % 3 == 0 else "automatic"
            value = None if n % 7 == 0 else float(n % 5)
            metrics = {} if value is None else {"loss": value, "other": 1.0}
            created = NOW + n // 4
            catalog.commit_checkpoint(
                checkpoint(f"c{n:02d}", type=kind, created=created, metrics=metrics), [], "h"
            )
            model.append((f"c{n:02d}", kind, created, value))
        catalog.commit_checkpoint(  # the pending one is filled, keeping its place
            checkpoint("p", created=NOW + 2, metrics={"loss": 2.0}), [], "h"
        )
        model[0] = ("p", "automatic", NOW + 2, 2.0)
        for gone in ("c03", "c10"):
            catalog.delete_checkpoint(gone, NOW)
        model = [entry for entry in model if entry[0] not in ("c03", "c10")]
        sign = -1.0 if descending else 1.0

        def expected(types: tuple[str, ...] | None) -> list[str]:
            kept = [(i, e) for i, e in enumerate(model) if types is None or e[1] in types]
            kept.sort(
                key=lambda item: (
                    item[1][3] is None,
                    0.0 if item[1][3] is None else sign * item[1][3],
                    -item[1][2],
                    -item[0],
                )
            )
            return [entry[0] for _, entry in kept]

        for types in (None, ("best",), ("automatic", "best")):
            seen: list[str] = []
            cursor = None
            while True:
                query = ListQuery("", "job", "loss", descending, 4, types=types, cursor=cursor)
                page, total, cursor = catalog.list_checkpoints(query)
                assert total == len(expected(types))
                seen += [r.checkpoint_id for r in page]
                if cursor is None:
                    break
            assert seen == expected(types)

    def test_a_cursor_this_catalog_did_not_make_is_refused(self, catalog: Catalog) -> None:
        with pytest.raises(InvalidArgument):
            catalog.list_checkpoints(ListQuery("", "job", "createdAt", True, 5, cursor="x!"))
