"""The shipped tests of the Lookups Protocol: ids by prefix, a job's newest ready checkpoint."""

from __future__ import annotations

import pytest

from ckptstore.store.catalog.base import Catalog
from ckptstore.testing.catalog.helpers import NOW, CatalogFixture, checkpoint, present


class LookupTests(CatalogFixture):
    def test_ids_with_prefix_are_the_tenants_own_in_id_order(self, catalog: Catalog) -> None:
        for cid, tenant in [("ckpt_ab12", "a"), ("ckpt_ab34", "a"), ("ckpt_ab56", "b")]:
            catalog.commit_checkpoint(checkpoint(cid, tenant_id=tenant), [], "h")
        assert catalog.ids_with_prefix("a", "ckpt_ab", 10) == ["ckpt_ab12", "ckpt_ab34"]
        assert catalog.ids_with_prefix("a", "ckpt_ab", 1) == ["ckpt_ab12"]
        # another tenant's ids neither match nor count
        assert catalog.ids_with_prefix("a", "ckpt_ab5", 10) == []
        assert catalog.ids_with_prefix("b", "ckpt_ab", 10) == ["ckpt_ab56"]

    def test_an_id_is_its_own_prefix_and_wildcards_are_literal(self, catalog: Catalog) -> None:
        for cid in ("run1", "run10", "runX1", "run_1"):
            catalog.commit_checkpoint(checkpoint(cid), [], "h")
        assert catalog.ids_with_prefix("", "run1", 10) == ["run1", "run10"]
        assert catalog.ids_with_prefix("", "run10", 10) == ["run10"]
        # "_" and "%" mean themselves (LIKE would read them as wildcards)
        assert catalog.ids_with_prefix("", "run_", 10) == ["run_1"]
        assert catalog.ids_with_prefix("", "run%", 10) == []
        # case matters, as ids are compared byte for byte
        assert catalog.ids_with_prefix("", "RUN", 10) == []

    def test_pending_checkpoints_have_prefixes_too(self, catalog: Catalog) -> None:
        catalog.create_checkpoint(checkpoint("ckpt_pend", status="pending"))
        assert catalog.ids_with_prefix("", "ckpt_p", 10) == ["ckpt_pend"]

    @pytest.mark.parametrize(
        ("types", "expected"),
        [
            (("automatic", "manual", "final"), "final1"),
            (("best",), "best1"),
            (("final",), "final1"),
        ],
    )
    def test_newest_ready_of_types(
        self, catalog: Catalog, types: tuple[str, ...], expected: str
    ) -> None:
        catalog.commit_checkpoint(checkpoint("auto1", created=NOW), [], "h")
        catalog.commit_checkpoint(checkpoint("final1", created=NOW + 1, type="final"), [], "h")
        catalog.commit_checkpoint(checkpoint("best1", created=NOW + 2, type="best"), [], "h")
        catalog.create_checkpoint(checkpoint("pending1", created=NOW + 3, status="pending"))
        catalog.commit_checkpoint(checkpoint("other", created=NOW + 4, job="job2"), [], "h")
        catalog.commit_checkpoint(checkpoint("theirs", created=NOW + 5, tenant_id="b"), [], "h")
        found = present(catalog.newest_ready("", "job", types), "newest checkpoint")
        assert found.checkpoint_id == expected

    def test_newest_ready_breaks_ties_by_insertion(self, catalog: Catalog) -> None:
        for cid in ("m", "a", "z"):
            catalog.commit_checkpoint(checkpoint(cid, created=NOW), [], "h")
        found = present(catalog.newest_ready("", "job", ("automatic",)), "newest checkpoint")
        assert found.checkpoint_id == "z"

    def test_newest_ready_of_nothing_is_none(self, catalog: Catalog) -> None:
        catalog.create_checkpoint(checkpoint("p", status="pending"))
        catalog.commit_checkpoint(checkpoint("c", tenant_id="b"), [], "h")
        assert catalog.newest_ready("", "job", ("automatic",)) is None
        assert catalog.newest_ready("", "nojob", ("automatic",)) is None
