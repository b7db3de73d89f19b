"""The shipped tests of the BlockIndex Protocol: packs and the blocks in them."""

from __future__ import annotations

from ckptstore.store.catalog.base import Catalog
from ckptstore.testing.catalog.helpers import (
    ENTRY_HEADER,
    NOW,
    PACK_HEADER,
    TTL,
    CatalogFixture,
    bid,
    block,
    checkpoint,
    stored_block,
)


class BlockIndexTests(CatalogFixture):
    """Every test names the catalog fixture ``catalog``; it is a whole Catalog, and the
    tests here use the BlockIndex methods (and others only to set up or observe)."""

    def test_add_pack_reports_new_blocks_and_keeps_first_location(self, catalog: Catalog) -> None:
        assert self.add(catalog, 1, 2) == 2
        assert self.add(catalog, 2, 3, pack="pack0002") == 1
        assert stored_block(catalog, 2).pack_id == "pack0001"
        assert stored_block(catalog, 3).pack_id == "pack0002"

    def test_unreferenced_names_the_blocks_no_checkpoint_holds(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2, 3)
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1))], "h")
        found = catalog.unreferenced([bid(1), bid(2), bid(2), bid(3), bid(9)])
        assert sorted(r.block_id for r in found) == [bid(2), bid(3)]

    def test_new_to_tenant_ignores_what_other_tenants_hold(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2, 3)
        catalog.commit_checkpoint(checkpoint("a", tenant_id="a"), [(0, bid(1)), (1, bid(2))], "h")
        catalog.commit_checkpoint(checkpoint("b", tenant_id="b"), [(0, bid(2))], "h")
        asked = [bid(1), bid(2), bid(2), bid(3), bid(9)]
        assert sorted(r.block_id for r in catalog.new_to_tenant("b", asked)) == [bid(1), bid(3)]
        assert sorted(r.block_id for r in catalog.new_to_tenant("a", asked)) == [bid(3)]
        assert len(catalog.new_to_tenant("c", asked)) == 3

    def test_get_blocks_returns_present_only(self, catalog: Catalog) -> None:
        self.add(catalog, 1, 2)
        assert set(catalog.get_blocks([bid(1), bid(2), bid(3)])) == {bid(1), bid(2)}

    def test_a_block_keeps_its_entry_header_length_and_width(self, catalog: Catalog) -> None:
        tensor = block(bid(1), "pack0001", PACK_HEADER, 100, 1000, 4, width=2)
        opaque = block(bid(2), "pack0001", PACK_HEADER + tensor.entry_len, 50, 60, 1)
        size = PACK_HEADER + tensor.entry_len + opaque.entry_len
        catalog.add_pack("pack0001", size, [tensor, opaque], NOW, "h", NOW + TTL)
        assert catalog.get_block(bid(1)) == tensor and catalog.get_block(bid(2)) == opaque
        assert stored_block(catalog, 1).entry_end == PACK_HEADER + ENTRY_HEADER + 100
        assert stored_block(catalog, 2).width is None
        assert [b.block_id for b in catalog.iter_blocks()] == [bid(1), bid(2)]
