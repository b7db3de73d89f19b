"""API keys as the server sees them: found valid once, trusted for a bounded time."""

from __future__ import annotations

import pytest

from ckptstore.server.auth import KeyCache, create_api_key
from tests.server_helpers import JOB, make_server

LIST = f"/v2/training/jobs/{JOB}/checkpoints"


@pytest.mark.parametrize("ttl_s", [1.0, 5.0])
def test_a_revoked_key_is_refused_once_the_cache_time_has_passed(tmp_path, ttl_s):
    srv = make_server(tmp_path, api_key_cache_s=ttl_s)
    catalog = srv.store.context.catalog
    record, key = create_api_key(catalog, "acme", "short-lived", srv.clock.now)
    headers = {"Authorization": f"Bearer {key}"}
    with srv.client:
        assert srv.client.get(LIST, headers=headers).status_code == 200
        catalog.revoke_api_key(record.key_id, srv.clock.now)
        srv.clock.advance(ttl_s / 2)
        assert srv.client.get(LIST, headers=headers).status_code == 200
        srv.clock.advance(ttl_s / 2)
        assert srv.client.get(LIST, headers=headers).status_code == 401


def test_a_cache_time_of_zero_refuses_a_revoked_key_at_once(tmp_path):
    srv = make_server(tmp_path, api_key_cache_s=0)
    catalog = srv.store.context.catalog
    record, key = create_api_key(catalog, "acme", "short-lived", srv.clock.now)
    headers = {"Authorization": f"Bearer {key}"}
    with srv.client:
        assert srv.client.get(LIST, headers=headers).status_code == 200
        catalog.revoke_api_key(record.key_id, srv.clock.now)
        assert srv.client.get(LIST, headers=headers).status_code == 401


class CountingCatalog:
    def __init__(self, inner):
        self.inner = inner
        self.lookups = 0

    def active_key(self, key_hash):
        self.lookups += 1
        return self.inner.active_key(key_hash)


def test_key_cache_looks_a_valid_key_up_once_per_window_and_a_wrong_one_each_time(tmp_path):
    srv = make_server(tmp_path)
    catalog = CountingCatalog(srv.store.context.catalog)
    cache = KeyCache(catalog, 2.0, srv.clock)
    good = srv.acme["Authorization"]
    wrong = "Bearer ck_00000000_" + "A" * 43
    assert [cache.key_for(good).tenant_id for _ in range(3)] == ["acme"] * 3
    assert catalog.lookups == 1
    assert [cache.key_for(wrong) for _ in range(3)] == [None] * 3
    assert catalog.lookups == 4
    srv.clock.advance(2.0)
    assert cache.key_for(good).tenant_id == "acme"
    assert catalog.lookups == 5
    assert cache.key_for("Basic abc") is None and cache.key_for(None) is None
    assert catalog.lookups == 5
    srv.store.close()
