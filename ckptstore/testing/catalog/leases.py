"""The shipped tests of the Leases Protocol: holds that keep blocks from GC."""

from __future__ import annotations

from ckptstore.store.catalog.base import Catalog
from ckptstore.testing.catalog.helpers import (
    NOW,
    TTL,
    CatalogFixture,
    bid,
    checkpoint,
)


class LeaseTests(CatalogFixture):
    """Every test names the catalog fixture ``catalog``; it is a whole Catalog, and the
    tests here use the Leases methods (and others only to set up or observe)."""

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

    def test_lease_visible_hides_other_tenants_blocks(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("a", tenant_id="a"), [(0, bid(1))], "h")
        catalog.commit_checkpoint(checkpoint("b", tenant_id="b"), [(0, bid(2))], "h")
        assert catalog.lease_visible([bid(1), bid(2)], "a", "u", NOW + TTL) == {bid(1)}
