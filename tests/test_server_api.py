"""The checkpoint API of the seed, through the ASGI app."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.conftest import random_bytes
from tests.server_helpers import JOB, make_server

MB = 1_000_000


@pytest.fixture
def srv(tmp_path):
    server = make_server(tmp_path)
    with server.client:
        yield server


def create(srv, job=JOB, headers=None, **body):
    r = srv.client.post(
        f"/v2/training/jobs/{job}/checkpoints", headers=headers or srv.acme, json=body
    )
    assert r.status_code == 201, r.text
    return r.json()


def upload(srv, checkpoint_id, data, headers=None):
    r = srv.client.put(
        f"/v2/training/checkpoints/{checkpoint_id}/data", headers=headers or srv.acme, content=data
    )
    assert r.status_code == 200, r.text
    return r.json()


def metric(srv, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample of the server's /metrics (read with the admin key)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = srv.client.get("/metrics", headers=srv.acme).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


def saved(srv, data=b"weights", job=JOB, headers=None, **body):
    """A trainer registering and uploading its own checkpoint."""
    return upload(srv, create(srv, job, headers, **body)["checkpointId"], data, headers)


SEED_FIELDS = {
    "checkpointId",
    "name",
    "epoch",
    "step",
    "metrics",
    "size",
    "type",
    "downloadUrl",
    "deployable",
    "createdAt",
}
EXTRA_FIELDS = {
    "jobId",
    "description",
    "status",
    "sizeBytes",
    "storedBytes",
    "downloadUrlExpiresAt",
    "parentId",
    "layout",
    "sha256",
}


def test_manual_checkpoint_request_is_pending_then_ready(srv):
    body = {
        "name": "Manual Checkpoint - Good Performance",
        "description": "Saving model state after observing good validation metrics",
    }
    pending = create(srv, **body)
    assert set(pending) == SEED_FIELDS | EXTRA_FIELDS
    assert (pending["type"], pending["status"], pending["deployable"]) == (
        "manual",
        "pending",
        False,
    )
    assert pending["downloadUrl"] is None and pending["name"] == body["name"]
    ready = upload(srv, pending["checkpointId"], random_bytes(2 * MB, seed=1))
    assert (ready["status"], ready["deployable"], ready["size"], ready["sizeBytes"]) == (
        "ready",
        True,
        "2.0MB",
        2 * MB,
    )
    assert ready["createdAt"].endswith("Z")
    fetched = srv.client.get(
        f"/v2/training/checkpoints/{pending['checkpointId']}", headers=srv.acme
    )
    assert fetched.status_code == 200 and fetched.json()["status"] == "ready"


def test_uploading_twice_is_a_conflict(srv):
    ready = saved(srv)
    r = srv.client.put(
        f"/v2/training/checkpoints/{ready['checkpointId']}/data", headers=srv.acme, content=b"again"
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


def test_automatic_checkpoints_get_epoch_names_and_a_best_copy(srv):
    for epoch, loss in [(1, 0.9), (2, 0.7), (3, 0.8)]:
        saved(
            srv,
            random_bytes(1000, seed=epoch),
            type="automatic",
            epoch=epoch,
            step=epoch * 600,
            metrics={"loss": loss, "validationLoss": loss + 0.1, "validationAccuracy": 1 - loss},
        )
    listed = srv.client.get(f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme).json()
    names = sorted(c["name"] for c in listed["checkpoints"])
    assert names == [
        "Best Validation - Epoch 2",
        "Epoch 1 Checkpoint",
        "Epoch 2 Checkpoint",
        "Epoch 3 Checkpoint",
    ]
    best = listed["summary"]["bestCheckpoint"]
    assert best["metrics"] == {
        "validationLoss": pytest.approx(0.8),
        "validationAccuracy": pytest.approx(0.3),
    }
    (best_row,) = [c for c in listed["checkpoints"] if c["type"] == "best"]
    assert best_row["checkpointId"] == best["checkpointId"] and best_row["storedBytes"] == 0
    latest = max(listed["checkpoints"], key=lambda c: c["createdAt"])
    assert listed["summary"]["latestCheckpoint"]["createdAt"] == latest["createdAt"]


@pytest.fixture
def listing(srv):
    """Five checkpoints with distinct epochs, steps and metrics; one lacks accuracy."""
    rows = [
        (1, 300, 0.9, 0.60),
        (2, 100, 0.5, 0.80),
        (3, 500, 0.7, None),
        (4, 200, 0.6, 0.75),
        (5, 400, 0.8, 0.70),
    ]
    for epoch, step, loss, acc in rows:
        srv.clock.advance(10)
        metrics = {"loss": loss} | ({"accuracy": acc} if acc is not None else {})
        saved(
            srv,
            random_bytes(100, seed=epoch),
            type="manual",
            epoch=epoch,
            step=step,
            metrics=metrics,
        )
    return srv


@pytest.mark.parametrize(
    "sort_by, order, limit, include_metrics",
    list(
        itertools.product(
            ["createdAt", "epoch", "step", "loss", "accuracy"],
            ["asc", "desc"],
            [1, 3, 50, 100],
            [True, False],
        )
    ),
)
def test_list_sorts_limits_and_includes_metrics(listing, sort_by, order, limit, include_metrics):
    params = {
        "sortBy": sort_by,
        "sortOrder": order,
        "limit": limit,
        "includeMetrics": str(include_metrics).lower(),
    }
    body = listing.client.get(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=listing.acme, params=params
    ).json()
    assert body["totalCount"] == 5
    got = body["checkpoints"]
    assert len(got) == min(limit, 5)
    assert all(("metrics" in c) == include_metrics for c in got)
    everything = listing.store.list(JOB, limit=None, tenant="acme").checkpoints

    def key(record):
        if sort_by == "createdAt":
            return record.created_at
        if sort_by in ("epoch", "step"):
            return getattr(record, sort_by)
        return record.metrics.get(sort_by)

    present = sorted(
        (r for r in everything if key(r) is not None), key=key, reverse=order == "desc"
    )
    missing = [r for r in everything if key(r) is None]  # lacking the key: last either way
    expected = [r.checkpoint_id for r in present + missing][:limit]
    assert [c["checkpointId"] for c in got] == expected


def test_list_defaults_are_created_at_desc_50_with_metrics(listing):
    body = listing.client.get(f"/v2/training/jobs/{JOB}/checkpoints", headers=listing.acme).json()
    assert [c["epoch"] for c in body["checkpoints"]] == [5, 4, 3, 2, 1]
    assert "metrics" in body["checkpoints"][0]
    assert body["summary"]["totalSize"] == "500B"


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "ten"}, "limit"),
        ({"sortOrder": "up"}, "sortOrder"),
        ({"includeMetrics": "maybe"}, "includeMetrics"),
        ({"sortBy": "nonsense"}, "sortBy"),
    ],
)
def test_list_rejects_bad_parameters_with_422_naming_them(listing, params, parameter):
    r = listing.client.get(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=listing.acme, params=params
    )
    assert r.status_code == 422
    assert parameter in r.json()["error"]["message"]


def test_unknown_job_lists_nothing(srv):
    body = srv.client.get("/v2/training/jobs/never_seen/checkpoints", headers=srv.acme).json()
    assert body == {
        "checkpoints": [],
        "totalCount": 0,
        "nextCursor": None,
        "summary": {"bestCheckpoint": None, "latestCheckpoint": None, "totalSize": "0B"},
    }


def test_delete_returns_204_and_gc_reclaims(srv):
    ready = saved(srv, random_bytes(2 * MB, seed=9))
    assert srv.store.stats().stored_bytes > 2 * MB
    r = srv.client.delete(f"/v2/training/checkpoints/{ready['checkpointId']}", headers=srv.acme)
    assert r.status_code == 204 and r.content == b""
    assert (
        srv.client.get(
            f"/v2/training/checkpoints/{ready['checkpointId']}", headers=srv.acme
        ).status_code
        == 404
    )
    srv.clock.advance(3600 * 24)
    report = srv.client.post("/v2/gc", headers=srv.acme).json()
    assert report["blocksRemoved"] > 0 and report["bytesFreed"] > 2 * MB
    assert srv.store.stats().stored_bytes == 0


def test_delete_wakes_the_background_gc(tmp_path):
    server = make_server(tmp_path, gc_after_delete_s=0)
    with server.client:
        ready = saved(server, random_bytes(MB, seed=10))
        assert metric(server, "ckptstore_gc_runs_total") == 0
        r = server.client.delete(
            f"/v2/training/checkpoints/{ready['checkpointId']}", headers=server.acme
        )
        assert r.status_code == 204
        deadline = time.monotonic() + 30
        while metric(server, "ckptstore_gc_runs_total") < 1:
            assert time.monotonic() < deadline, "no GC ran after the delete"
            time.sleep(0.02)
        # inside the grace period the run keeps the blocks a reader may still hold
        assert server.store.stats().stored_bytes > MB // 2


def test_endpoints_pin_checkpoints_and_hand_out_fresh_urls(srv):
    ready = saved(srv, b"model")
    body = {
        "name": "My Fine-tuned Model",
        "checkpointId": ready["checkpointId"],
        "gpuIds": ["rtx-4090"],
        "workerCount": 1,
    }
    r = srv.client.post("/v2/endpoints", headers=srv.acme, json=body)
    assert r.status_code == 201
    endpoint = r.json()
    assert endpoint["id"].startswith("ep_") and endpoint["url"].endswith(endpoint["id"])
    blocked = srv.client.delete(
        f"/v2/training/checkpoints/{ready['checkpointId']}", headers=srv.acme
    )
    assert blocked.status_code == 409 and endpoint["id"] in blocked.json()["error"]["message"]
    srv.clock.advance(7200)  # the first URL expired; the endpoint gives a fresh one
    fresh = srv.client.get(f"/v2/endpoints/{endpoint['id']}", headers=srv.acme).json()
    assert srv.client.get(fresh["downloadUrl"]).content == b"model"
    assert srv.client.get(endpoint["downloadUrl"]).status_code == 403
    listed = srv.client.get("/v2/endpoints", headers=srv.acme).json()["endpoints"]
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert srv.client.delete(f"/v2/endpoints/{endpoint['id']}", headers=srv.acme).status_code == 204
    assert (
        srv.client.delete(
            f"/v2/training/checkpoints/{ready['checkpointId']}", headers=srv.acme
        ).status_code
        == 204
    )


def test_deploying_a_pending_checkpoint_is_a_conflict(srv):
    pending = create(srv)
    r = srv.client.post(
        "/v2/endpoints",
        headers=srv.acme,
        json={"name": "x", "checkpointId": pending["checkpointId"]},
    )
    assert r.status_code == 409


def test_job_settings_drive_best_metric_and_retention(srv):
    r = srv.client.put(
        f"/v2/training/jobs/{JOB}/settings",
        headers=srv.acme,
        json={"bestMetric": "validationAccuracy", "keepAutomatic": 2},
    )
    assert r.json() == {"bestMetric": "validationAccuracy", "bestMode": "max", "keepAutomatic": 2}
    for epoch, acc in [(1, 0.5), (2, 0.9), (3, 0.7), (4, 0.6)]:
        srv.clock.advance(1)
        saved(
            srv,
            random_bytes(100, seed=epoch),
            type="automatic",
            epoch=epoch,
            metrics={"validationAccuracy": acc},
        )
    saved(srv, b"final", type="final", epoch=5)
    rows = srv.client.get(f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme).json()
    kinds = sorted((c["type"], c["epoch"]) for c in rows["checkpoints"])
    assert kinds == [("automatic", 3), ("automatic", 4), ("best", 2), ("final", 5)]
    assert (
        srv.client.get(f"/v2/training/jobs/{JOB}/settings", headers=srv.acme).json()[
            "keepAutomatic"
        ]
        == 2
    )


def test_errors_are_json_with_the_right_status(srv):
    bad_json = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints",
        headers={**srv.acme, "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "malformed_json"
    unknown_field = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json={"nmae": "typo"}
    )
    assert unknown_field.status_code == 422 and "nmae" in unknown_field.json()["error"]["message"]
    bad_type = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json={"type": "weekly"}
    )
    assert bad_type.status_code == 422 and "type" in bad_type.json()["error"]["message"]
    bad_job = srv.client.get("/v2/training/jobs/bad%20job/checkpoints", headers=srv.acme)
    assert bad_job.status_code == 422 and "jobId" in bad_job.json()["error"]["message"]
    missing = srv.client.get("/v2/training/checkpoints/ckpt_nope", headers=srv.acme)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_key = srv.client.get(
        "/v2/endpoints", headers={"Authorization": "Bearer ck_00000000_" + "x" * 43}
    )
    assert wrong_key.status_code == 401 and wrong_key.headers["www-authenticate"] == "Bearer"
    assert srv.client.get("/v2/endpoints").status_code == 401
    assert srv.store.stats().checkpoints == 0  # nothing reached the engine


@pytest.mark.parametrize(
    "body, parameter",
    [
        ({"epoch": 2**63}, "epoch"),
        ({"step": 10**30}, "step"),
        ({"name": "a\x00b"}, "name"),
        ({"metrics": {f"m{i}": 1.0 for i in range(20_000)}}, "metrics"),
    ],
)
def test_out_of_bounds_checkpoint_fields_are_422_naming_them(srv, body, parameter):
    r = srv.client.post(f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json=body)
    assert r.status_code == 422 and parameter in r.json()["error"]["message"]
    assert srv.store.stats().checkpoints == 0


def test_an_unexpected_failure_is_a_json_500(srv, monkeypatch):
    from fastapi.testclient import TestClient

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(srv.store, "jobs", broken)
    client = TestClient(srv.client.app, raise_server_exceptions=False)
    r = client.get("/v2/training/jobs", headers=srv.acme)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "disk on fire" not in r.text  # internals stay in the server log


def test_json_bodies_past_the_limit_are_413_before_parsing(tmp_path):
    server = make_server(tmp_path, max_json_body_bytes=10_000)
    cid = server.store.create_pending(JOB, tenant="acme").checkpoint_id
    body = b'{"blockIds": ["' + b"a" * 20_000 + b'"]}'
    with server.client as client:
        url = f"/v2/training/checkpoints/{cid}/blocks/missing"
        declared = client.post(url, headers=server.acme, content=body)
        streamed = client.post(url, headers=server.acme, content=iter([body[:9_000]] * 3))
        small = client.post(url, headers=server.acme, json={"blockIds": []})
    for r in (declared, streamed):
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert small.status_code == 200


def test_a_full_disk_is_a_json_507_and_healthz_says_so(srv, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    from fastapi.testclient import TestClient

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    cid = srv.store.create_pending(JOB, tenant="acme").checkpoint_id
    monkeypatch.setattr(srv.store, "fill", no_space)
    client = TestClient(srv.client.app, raise_server_exceptions=False)
    r = client.put(f"/v2/training/checkpoints/{cid}/data", headers=srv.acme, content=b"x" * 100)
    assert r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage"
    assert srv.store.get(cid, tenant="acme").status == "pending"
    assert client.get("/healthz").status_code == 200
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    health = client.get("/healthz")
    assert health.status_code == 507 and health.json()["freeBytes"] == 1000


def test_keep_automatic_beyond_any_job_is_422(srv):
    r = srv.client.put(
        f"/v2/training/jobs/{JOB}/settings", headers=srv.acme, json={"keepAutomatic": 1e30}
    )
    assert r.status_code == 422 and "keepAutomatic" in r.json()["error"]["message"]


def test_tenants_cannot_see_touch_or_learn_of_each_other(srv):
    mine = saved(srv, random_bytes(MB, seed=3))
    cid = mine["checkpointId"]
    o = srv.other
    assert srv.client.get(f"/v2/training/checkpoints/{cid}", headers=o).status_code == 404
    assert srv.client.delete(f"/v2/training/checkpoints/{cid}", headers=o).status_code == 404
    assert (
        srv.client.put(f"/v2/training/checkpoints/{cid}/data", headers=o, content=b"x").status_code
        == 404
    )
    assert (
        srv.client.get(f"/v2/training/jobs/{JOB}/checkpoints", headers=o).json()["totalCount"] == 0
    )
    assert (
        srv.client.post(
            "/v2/endpoints", headers=o, json={"name": "x", "checkpointId": cid}
        ).status_code
        == 404
    )
    assert srv.client.get(f"/v2/training/checkpoints/{cid}", headers=srv.acme).status_code == 200


def _upload_by_blocks(srv, headers, data: bytes) -> dict:
    from tests.conftest import client_blocks
    from tests.server_helpers import frames

    cid = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=headers, json={"type": "automatic"}
    ).json()["checkpointId"]
    blocks = client_blocks(srv.store, data)
    base = f"/v2/training/checkpoints/{cid}"
    ids = [bid.hex() for bid, _ in blocks]
    missing = srv.client.post(f"{base}/blocks/missing", headers=headers, json={"blockIds": ids})
    assert sorted(missing.json()["missing"]) == sorted(set(ids))  # nothing is "known" to B
    sent = srv.client.put(f"{base}/blocks", headers=headers, content=frames(blocks))
    assert sent.status_code == 204
    done = srv.client.post(f"{base}/commit", headers=headers, json={"blockIds": ids})
    assert done.status_code == 200
    return done.json()


@pytest.mark.parametrize("path", ["data", "blocks"])
def test_a_tenant_is_charged_as_if_alone_in_the_store(srv, path):
    data = random_bytes(MB, seed=12)
    first = saved(srv, data)  # acme stores the bytes first
    if path == "data":
        theirs = saved(srv, data, headers=srv.other)
    else:
        theirs = _upload_by_blocks(srv, srv.other, data)
    assert theirs["storedBytes"] == first["storedBytes"] > 0
    stats = srv.client.get("/v2/stats", headers=srv.other).json()
    assert stats["storedBytes"] == first["storedBytes"]
    again = saved(srv, data, headers=srv.other)  # their own second copy costs nothing
    assert again["storedBytes"] == 0


def test_healthz_metrics_and_stats(srv):
    saved(srv, random_bytes(MB, seed=4))
    assert srv.client.get("/healthz").json() == {"status": "ok"}
    assert metric(srv, "ckptstore_logical_bytes") == MB
    assert metric(srv, "ckptstore_pending_rebases") == 0
    route = "/v2/training/checkpoints/{checkpointId}/data"
    put = {"method": "PUT", "route": route}
    assert metric(srv, "ckptstore_requests_total", put | {"status": "200"}) == 1
    assert metric(srv, "ckptstore_request_duration_seconds_count", put) == 1
    assert metric(srv, "ckptstore_request_duration_seconds_bucket", put | {"le": "+Inf"}) == 1
    stats = srv.client.get("/v2/stats", headers=srv.acme).json()
    assert stats["checkpoints"] == 1 and stats["logicalBytes"] == MB
    assert srv.client.get("/v2/stats", headers=srv.other).json()["checkpoints"] == 0


def test_store_wide_figures_and_gc_need_an_admin_key(srv):
    for method, path in (("GET", "/metrics"), ("POST", "/v2/gc")):
        assert srv.client.request(method, path).status_code == 401
        refused = srv.client.request(method, path, headers=srv.other)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_required"
        assert srv.client.request(method, path, headers=srv.acme).status_code == 200


def test_each_request_is_logged_once_with_its_id_tenant_and_outcome(srv, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="ckptstore"):
        r = srv.client.get(
            f"/v2/training/jobs/{JOB}/checkpoints", headers={**srv.other, "X-Request-ID": "req-7"}
        )
        fresh = srv.client.get("/healthz")
        srv.client.post("/v2/gc", headers=srv.acme)
    assert r.headers["x-request-id"] == "req-7" and len(fresh.headers["x-request-id"]) == 32
    lines = [rec for rec in caplog.records if rec.name == "ckptstore.access"]
    assert [rec.__dict__["request_id"] for rec in lines[:1]] == ["req-7"]
    first = lines[0].__dict__
    assert (first["tenant"], first["status"], first["route"]) == (
        "other",
        200,
        "/v2/training/jobs/{jobId}/checkpoints",
    )
    assert first["bytes"] == len(r.content) and first["ms"] >= 0
    assert len(lines) == 3 and lines[1].__dict__["tenant"] is None
    assert any(rec.name == "ckptstore.gc" and "GC:" in rec.getMessage() for rec in caplog.records)


def test_openapi_documents_the_routes(srv):
    paths = srv.client.get("/openapi.json").json()["paths"]
    for path in [
        "/v2/training/jobs/{jobId}/checkpoints",
        "/v2/training/checkpoints/{checkpointId}",
        "/v2/training/checkpoints/{checkpointId}/data",
        "/v2/endpoints",
        "/v2/training/checkpoints/{checkpointId}/blocks/missing",
        "/signed/{checkpointId}",
    ]:
        assert path in paths


def test_store_settings_come_from_the_environment(monkeypatch, tmp_path):
    from ckptstore.config import ServerSettings
    from ckptstore.server.app import app_from_env

    monkeypatch.setenv("CKPTSTORE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CKPTSTORE_DELTA_MAX_DEPTH", "3")
    monkeypatch.setenv("CKPTSTORE_GC_GRACE", "60")
    monkeypatch.setenv("CKPTSTORE_SIGNING_KEYS", "old,new")
    settings = ServerSettings.from_env()
    assert (settings.delta_max_depth, settings.gc_grace_s) == (3, 60)
    assert settings.signing_keys == ("old", "new")
    app = app_from_env()
    store = app.state.services.store
    assert store.context.config.delta_max_depth == 3 and store.context.config.gc_grace_s == 60
    assert store.context.catalog is not None and (tmp_path / "data").is_dir()
    store.close()
    monkeypatch.setenv("CKPTSTORE_DELTA_MAX_DEPTH", "deep")
    monkeypatch.setenv("CKPTSTORE_GC_GRACE", "-1")
    with pytest.raises(ValueError) as bad:
        ServerSettings.from_env()
    assert "CKPTSTORE_DELTA_MAX_DEPTH='deep'" in str(bad.value)
    assert "CKPTSTORE_GC_GRACE='-1'" in str(bad.value)


def test_base_cache_size_comes_from_the_environment(monkeypatch, tmp_path):
    from ckptstore.config import ServerSettings
    from ckptstore.server.app import app_from_env

    monkeypatch.setenv("CKPTSTORE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CKPTSTORE_DELTA_CACHE_BYTES", str(3 << 20))
    store = app_from_env().state.services.store
    assert store.context.config.delta_cache_bytes == 3 << 20
    assert store.context.base_cache.capacity == 3 << 20
    store.close()
    monkeypatch.setenv("CKPTSTORE_DELTA_CACHE_BYTES", "-1")
    with pytest.raises(ValueError, match="CKPTSTORE_DELTA_CACHE_BYTES='-1'"):
        ServerSettings.from_env()
