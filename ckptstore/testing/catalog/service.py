"""The shipped tests of the ServiceRecords Protocol: settings, endpoints, API keys."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ckptstore.errors import (
    CheckpointNotFound,
    CheckpointNotReady,
    CheckpointPinned,
    EndpointNameTaken,
    EndpointNotFound,
)
from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.records import (
    ApiKeyRecord,
    EndpointRecord,
)
from ckptstore.testing.catalog.helpers import (
    NOW,
    CatalogFixture,
    checkpoint,
    present,
)


class ServiceRecordTests(CatalogFixture):
    """Every test names the catalog fixture ``catalog``; it is a whole Catalog, and the
    tests here use the ServiceRecords methods (and others only to set up or observe)."""

    def test_settings_first_value_wins(self, catalog: Catalog) -> None:
        assert catalog.get_setting("k") is None
        assert catalog.set_setting_if_absent("k", "a") == "a"
        assert catalog.set_setting_if_absent("k", "b") == "a"
        assert catalog.get_setting("k") == "a"

    def endpoint(
        self, endpoint_id: str, checkpoint_id: str, tenant: str = "", name: str = ""
    ) -> EndpointRecord:
        return EndpointRecord(
            endpoint_id, tenant, name or endpoint_id, checkpoint_id, ["rtx-4090"], 1, "ready", NOW
        )

    def test_endpoint_pins_its_checkpoint(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("c"), [], "h")
        catalog.add_endpoint(self.endpoint("ep1", "c"))
        with pytest.raises(CheckpointPinned) as info:
            catalog.delete_checkpoint("c", NOW)
        assert info.value.endpoint_ids == ["ep1"]
        assert present(catalog.get_endpoint("ep1"), "endpoint ep1").gpu_ids == ["rtx-4090"]
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

    def test_endpoint_names_are_unique_per_tenant(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("c", tenant_id="a"), [], "h")
        catalog.commit_checkpoint(checkpoint("d", tenant_id="b"), [], "h")
        catalog.add_endpoint(self.endpoint("ep1", "c", "a", name="serve"))
        with pytest.raises(EndpointNameTaken) as info:
            catalog.add_endpoint(self.endpoint("ep2", "c", "a", name="serve"))
        assert info.value.name == "serve"
        assert [e.endpoint_id for e in catalog.list_endpoints("a")] == ["ep1"]
        catalog.add_endpoint(self.endpoint("ep3", "d", "b", name="serve"))  # another tenant's
        catalog.delete_endpoint("ep1")
        catalog.add_endpoint(self.endpoint("ep4", "c", "a", name="serve"))  # free again

    def test_update_endpoint_moves_the_pin(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("c1", tenant_id="a"), [], "h")
        catalog.commit_checkpoint(checkpoint("c2", tenant_id="a"), [], "h")
        catalog.add_endpoint(self.endpoint("ep1", "c1", "a", name="serve"))
        moved = replace(self.endpoint("ep1", "c2", "a", name="serving"), worker_count=3)
        catalog.update_endpoint(moved)
        assert catalog.get_endpoint("ep1") == moved
        catalog.delete_checkpoint("c1", NOW)  # no longer pinned
        with pytest.raises(CheckpointPinned):
            catalog.delete_checkpoint("c2", NOW)

    def test_update_endpoint_checks_what_add_checks(self, catalog: Catalog) -> None:
        catalog.commit_checkpoint(checkpoint("c", tenant_id="a"), [], "h")
        catalog.commit_checkpoint(checkpoint("theirs", tenant_id="b"), [], "h")
        catalog.create_checkpoint(checkpoint("p", status="pending", tenant_id="a"))
        catalog.add_endpoint(self.endpoint("ep1", "c", "a", name="one"))
        catalog.add_endpoint(self.endpoint("ep2", "c", "a", name="two"))
        with pytest.raises(CheckpointNotFound):
            catalog.update_endpoint(self.endpoint("ep1", "theirs", "a", name="one"))
        with pytest.raises(CheckpointNotReady):
            catalog.update_endpoint(self.endpoint("ep1", "p", "a", name="one"))
        with pytest.raises(EndpointNameTaken):
            catalog.update_endpoint(self.endpoint("ep1", "c", "a", name="two"))
        with pytest.raises(EndpointNotFound):  # another tenant cannot change it
            catalog.update_endpoint(self.endpoint("ep1", "theirs", "b", name="one"))
        with pytest.raises(EndpointNotFound):
            catalog.update_endpoint(self.endpoint("ep9", "c", "a", name="nine"))
        assert catalog.get_endpoint("ep1") == self.endpoint("ep1", "c", "a", name="one")

    def test_api_keys_map_to_tenants_until_revoked(self, catalog: Catalog) -> None:
        catalog.add_api_key(ApiKeyRecord("k1", "acme", "ci", NOW, None), b"hash-1")
        found = catalog.active_key(b"hash-1")
        assert found is not None and found.tenant_id == "acme" and not found.admin
        assert catalog.active_key(b"hash-2") is None
        assert [k.key_id for k in catalog.list_api_keys()] == ["k1"]
        assert catalog.revoke_api_key("k1", NOW) and not catalog.revoke_api_key("k1", NOW)
        assert catalog.active_key(b"hash-1") is None

    def test_an_admin_key_says_so(self, catalog: Catalog) -> None:
        catalog.add_api_key(ApiKeyRecord("k2", "ops", "", NOW, None, admin=True), b"hash-9")
        found = catalog.active_key(b"hash-9")
        assert found is not None and found.admin and found.tenant_id == "ops"
        assert [k.admin for k in catalog.list_api_keys()] == [True]
