"""References over HTTP: prefixes and aliases in checkpoint routes, endpoints re-pointed,
GC with a grace period of the caller's."""

from __future__ import annotations

import pytest

from ckptstore import Client
from ckptstore.errors import AmbiguousCheckpointId
from tests.conftest import random_bytes
from tests.server_helpers import JOB, make_server

CKPT = "/v2/training/checkpoints/"


@pytest.fixture
def srv(tmp_path):
    server = make_server(tmp_path)
    with server.client:
        yield server


def put(srv, cid, tenant="acme", data=b"x" * 1000, **fields):
    return srv.store.put(JOB, data, checkpoint_id=cid, tenant=tenant, **fields)


def test_an_alias_answers_with_the_id_and_a_url_that_names_it(srv):
    ck = put(srv, "ckpt_0123456789abcdef0123")
    body = srv.client.get(f"{CKPT}{JOB}:latest", headers=srv.acme).json()
    assert body["checkpointId"] == ck.checkpoint_id
    # the signed URL names the id: it keeps fetching this checkpoint when the alias moves
    assert body["downloadUrl"].split("?")[0].endswith(f"/signed/{ck.checkpoint_id}")
    srv.clock.advance(1)
    put(srv, "ckpt_ffff56789abcdef01234", data=b"y" * 1000)
    assert srv.client.get(body["downloadUrl"]).content == b"x" * 1000
    # a signed URL is never resolved: a prefix or an alias in it is refused
    query = body["downloadUrl"].partition("?")[2]
    for reference in (f"{JOB}:latest", "ckpt_0123456789"):
        assert srv.client.get(f"/signed/{reference}?{query}").status_code == 403


def test_an_ambiguous_prefix_lists_the_callers_ids_only(srv):
    for n in range(3):
        put(srv, f"ckpt_abcdef0{n}")
    put(srv, "ckpt_abcdef09", tenant="other")
    r = srv.client.get(f"{CKPT}ckpt_abcdef0", headers=srv.acme)
    assert r.status_code == 422
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("AmbiguousCheckpointId", "ambiguous_checkpoint_id")
    assert error["fields"]["matches"] == [f"ckpt_abcdef0{n}" for n in range(3)]
    assert "ckpt_abcdef09" not in r.text
    # the other tenant's only match is unique to it, and mine are no match of theirs
    mine = srv.client.get(f"{CKPT}ckpt_abcdef09", headers=srv.acme)
    assert mine.status_code == 404
    theirs = srv.client.get(f"{CKPT}ckpt_abcdef0", headers=srv.other).json()
    assert theirs["checkpointId"] == "ckpt_abcdef09"
    key = srv.acme["Authorization"].split()[1]
    with (
        Client("http://testserver", key, http=srv.client) as client,
        pytest.raises(AmbiguousCheckpointId) as info,
    ):
        client.get("ckpt_abcdef0")
    assert info.value.matches == [f"ckpt_abcdef0{n}" for n in range(3)]


def test_delete_by_prefix_deletes_that_checkpoint(srv):
    put(srv, "ckpt_11112222")
    r = srv.client.delete(f"{CKPT}ckpt_11", headers={**srv.acme, "Prefer": "return=representation"})
    assert r.status_code == 404  # shorter than the minimum: taken as a whole id
    r = srv.client.delete(
        f"{CKPT}ckpt_11112", headers={**srv.acme, "Prefer": "return=representation"}
    )
    assert r.status_code == 200 and r.json()["checkpointId"] == "ckpt_11112222"


def test_patch_re_points_an_endpoint(srv):
    put(srv, "ckpt_first000")
    deployed = srv.client.post(
        "/v2/endpoints", headers=srv.acme, json={"name": "serve", "checkpointId": f"{JOB}:latest"}
    ).json()
    assert deployed["checkpointId"] == "ckpt_first000"
    srv.clock.advance(1)
    put(srv, "ckpt_second00", data=b"z" * 1000)
    url = f"/v2/endpoints/{deployed['id']}"
    moved = srv.client.patch(url, headers=srv.acme, json={"checkpointId": f"{JOB}:latest"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["checkpointId"] == "ckpt_second00"
    assert srv.client.get(moved.json()["downloadUrl"]).content == b"z" * 1000
    assert srv.client.get(url, headers=srv.acme).json()["checkpointId"] == "ckpt_second00"
    # the other tenant can neither see nor change it
    assert srv.client.patch(url, headers=srv.other, json={"name": "x"}).status_code == 404
    bad = srv.client.patch(url, headers=srv.acme, json={"workerCount": 0})
    assert bad.status_code == 422 and bad.json()["error"]["fields"]["parameter"] == "workerCount"


def test_endpoint_names_clash_with_409(srv):
    put(srv, "ckpt_first000")
    body = {"name": "serve", "checkpointId": "ckpt_first000"}
    assert srv.client.post("/v2/endpoints", headers=srv.acme, json=body).status_code == 201
    again = srv.client.post("/v2/endpoints", headers=srv.acme, json=body)
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "EndpointNameTaken"
    second = srv.client.post(
        "/v2/endpoints", headers=srv.acme, json={**body, "name": "serve-2"}
    ).json()
    renamed = srv.client.patch(
        f"/v2/endpoints/{second['id']}", headers=srv.acme, json={"name": "serve"}
    )
    assert renamed.status_code == 409


def test_gc_grace_query_reclaims_at_once(srv):
    ck = put(srv, "ckpt_gcgcgcgc", data=random_bytes(300_000, seed=3))
    srv.store.delete(ck.checkpoint_id, tenant="acme")
    kept = srv.client.post("/v2/gc", headers=srv.acme).json()
    assert kept["blocksRemoved"] == 0  # within the server's grace period
    freed = srv.client.post("/v2/gc?grace=0", headers=srv.acme).json()
    assert freed["blocksRemoved"] > 0 and srv.store.stats().stored_bytes == 0
    bad = srv.client.post("/v2/gc?grace=-5", headers=srv.acme)
    assert bad.status_code == 422 and bad.json()["error"]["fields"]["parameter"] == "grace"
