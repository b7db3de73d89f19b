"""The web interface over plain HTTP (in process): sign-in, session cookie, CSRF,
tenant isolation, and every page and form."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ckptstore.store.ids import new_checkpoint_id
from tests.server_helpers import JOB, Server, make_server

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _key(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def _sign_in(client: TestClient, headers: dict[str, str]) -> str:
    """Signs ``client`` in; returns the session's CSRF token."""
    response = client.post("/ui/login", data={"api_key": _key(headers)})
    assert response.status_code == 200, response.text
    found = CSRF.search(response.text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def srv(tmp_path: Path) -> Server:
    server = make_server(tmp_path)
    for epoch, loss in enumerate([0.9, 0.5, 0.7]):
        server.store.put(
            JOB,
            bytes([epoch]) * 50_000,
            tenant="acme",
            epoch=epoch,
            step=100 * epoch,
            metrics={"loss": loss + 0.1, "validationLoss": loss},
        )
        server.clock.advance(3600)
    server.store.put("job_other", b"o" * 1000, tenant="other", epoch=0, metrics={"loss": 1.0})
    server.store.settle()
    return server


def _acme_ids(srv: Server) -> list[str]:
    return [r.checkpoint_id for r in srv.store.list(JOB, tenant="acme", limit=None).checkpoints]


def test_root_redirects_to_the_interface_and_pages_need_a_session(srv: Server) -> None:
    assert srv.client.get("/", follow_redirects=False).headers["location"] == "/ui/jobs"
    response = srv.client.get(f"/ui/jobs/{JOB}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/login?next=%2Fui%2Fjobs%2F{JOB}"


def test_login_with_a_bad_key_is_refused(srv: Server) -> None:
    for key in ("", "ck_00000000_" + "a" * 43, "nonsense"):
        response = srv.client.post("/ui/login", data={"api_key": key}, follow_redirects=False)
        assert response.status_code == 401
        assert "not valid" in response.text
        assert "set-cookie" not in response.headers
    assert srv.client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_session_cookie_is_signed_httponly_and_samesite(srv: Server) -> None:
    response = srv.client.post(
        "/ui/login", data={"api_key": _key(srv.acme), "next": "/ui/storage"}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/storage"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui" in cookie
    assert _key(srv.acme) not in cookie  # the key itself never leaves in the cookie
    value = srv.client.cookies["ckptstore_session"]
    srv.client.cookies.set("ckptstore_session", value[:-2] + "xx", path="/ui")
    assert srv.client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_login_next_never_leaves_the_interface(srv: Server) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/v2/stats"):
        response = srv.client.post(
            "/ui/login", data={"api_key": _key(srv.acme), "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/ui/jobs"


def test_session_expires_and_ends_with_its_key(srv: Server) -> None:
    _sign_in(srv.client, srv.acme)
    assert srv.client.get("/ui/jobs", follow_redirects=False).status_code == 200
    srv.clock.advance(13 * 3600)
    assert srv.client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_sign_out_clears_the_cookie_and_needs_the_token(srv: Server) -> None:
    csrf = _sign_in(srv.client, srv.acme)
    assert srv.client.post("/ui/logout", follow_redirects=False).status_code == 403
    response = srv.client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert 'ckptstore_session=""' in response.headers["set-cookie"]
    assert srv.client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_jobs_page_shows_only_the_tenants_jobs_with_sizes(srv: Server) -> None:
    _sign_in(srv.client, srv.acme)
    page = srv.client.get("/ui/jobs").text
    assert JOB in page and "job_other" not in page
    summary = srv.store.job_summary(JOB, tenant="acme")
    assert f'<td class="num">{summary.total_count}</td>' in page
    assert "validationLoss = 0.5" in page  # the best checkpoint's metric
    assert "×" in page  # the ratio


def test_job_page_sorts_filters_and_plots(srv: Server) -> None:
    _sign_in(srv.client, srv.acme)
    page = srv.client.get(
        f"/ui/jobs/{JOB}", params={"sortBy": "validationLoss", "sortOrder": "asc"}
    )
    assert page.status_code == 200
    rows = re.findall(r'<tr data-checkpoint="([^"]+)">', page.text)
    wanted = srv.store.list(JOB, sort_by="validationLoss", order="asc", tenant="acme")
    assert rows == [r.checkpoint_id for r in wanted.checkpoints]
    assert page.text.count("<svg") == 2 and "validationLoss by step" in page.text
    assert 'class="badge best"' in page.text
    only = srv.client.get(f"/ui/jobs/{JOB}", params={"type": "best"}).text
    assert len(re.findall(r"<tr data-checkpoint=", only)) == 1
    bad = srv.client.get(f"/ui/jobs/{JOB}", params={"sortBy": "no-such-metric"})
    assert bad.status_code == 422 and "Traceback" not in bad.text and "no-such-metric" in bad.text


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(srv: Server) -> None:
    _sign_in(srv.client, srv.acme)
    victim = _acme_ids(srv)[-1]
    posts = [
        (f"/ui/jobs/{JOB}/settings", {"bestMetric": "loss"}),
        (f"/ui/jobs/{JOB}/checkpoints", {"name": "x"}),
        (f"/ui/checkpoints/{victim}/delete", {"confirm": "yes"}),
        (f"/ui/checkpoints/{victim}/deploy", {"name": "e", "worker_count": "1"}),
        ("/ui/logout", {}),
    ]
    before = _acme_ids(srv)
    for url, data in posts:
        for token in (None, "wrong"):
            body = data | ({"csrf_token": token} if token else {})
            response = srv.client.post(url, data=body)
            assert response.status_code == 403, url
            assert "security token" in response.text
    assert _acme_ids(srv) == before
    assert srv.store.job_settings(JOB, tenant="acme").best_metric == "validationLoss"
    assert srv.store.endpoints(tenant="acme") == []


def test_settings_are_saved_and_bad_values_shown(srv: Server) -> None:
    csrf = _sign_in(srv.client, srv.acme)
    data = {"csrf_token": csrf, "bestMetric": "loss", "bestMode": "min", "keepAutomatic": "5"}
    response = srv.client.post(f"/ui/jobs/{JOB}/settings", data=data)
    assert response.status_code == 200 and "Settings saved." in response.text
    settings = srv.store.job_settings(JOB, tenant="acme")
    assert (settings.best_metric, settings.best_mode, settings.keep_automatic) == ("loss", "min", 5)
    bad = srv.client.post(f"/ui/jobs/{JOB}/settings", data=data | {"keepAutomatic": "-2"})
    assert bad.status_code == 422 and "keepAutomatic" in bad.text
    assert srv.store.job_settings(JOB, tenant="acme").keep_automatic == 5


def test_manual_checkpoint_request_adds_a_pending_checkpoint(srv: Server) -> None:
    csrf = _sign_in(srv.client, srv.acme)
    data = {"csrf_token": csrf, "name": "before lr drop"}
    response = srv.client.post(f"/ui/jobs/{JOB}/checkpoints", data=data)
    assert response.status_code == 200 and "Manual checkpoint requested" in response.text
    pending = srv.store.list(JOB, tenant="acme", types=("manual",)).checkpoints
    assert [(r.name, r.status) for r in pending] == [("before lr drop", "pending")]
    assert 'class="badge pending"' in response.text
    too_long = srv.client.post(f"/ui/jobs/{JOB}/checkpoints", data=data | {"name": "n" * 257})
    assert too_long.status_code == 400 and "Name" in too_long.text
    assert len(srv.store.list(JOB, tenant="acme", types=("manual",)).checkpoints) == 1


def test_checkpoint_page_links_a_working_download(srv: Server) -> None:
    _sign_in(srv.client, srv.acme)
    cid = _acme_ids(srv)[-1]
    page = srv.client.get(f"/ui/checkpoints/{cid}")
    assert page.status_code == 200 and "validationLoss" in page.text
    url = re.search(r'id="download" href="([^"]+)"', page.text)
    assert url is not None
    download = srv.client.get(url.group(1).replace("&amp;", "&"))
    assert download.status_code == 200
    lineage = page.text[page.text.index('id="lineage"') :]
    assert "stored as deltas" in lineage and "Shares with the previous" in lineage
    stored = io.BytesIO()
    srv.store.restore(cid, stored, tenant="acme")
    assert download.content == stored.getvalue()


def test_checkpoint_page_shows_the_sha256_and_a_folders_files(srv: Server, tmp_path) -> None:
    import hashlib

    from tests.test_cli import sample_folder

    _sign_in(srv.client, srv.acme)
    cid = _acme_ids(srv)[-1]
    stored = io.BytesIO()
    srv.store.restore(cid, stored, tenant="acme")
    page = srv.client.get(f"/ui/checkpoints/{cid}")
    assert f'id="sha256">{hashlib.sha256(stored.getvalue()).hexdigest()}<' in page.text
    folder = sample_folder(tmp_path / "ckdir")
    tree = srv.store.put(JOB, folder, tenant="acme")
    page = srv.client.get(f"/ui/checkpoints/{tree.checkpoint_id}")
    assert f'id="sha256">{tree.sha256}<' in page.text and "sha256sum" in page.text
    table = page.text[page.text.index('id="files"') :]
    data = (folder / "optimizer.pt").read_bytes()
    assert hashlib.sha256(data).hexdigest() in table and "0600" in table
    link = re.search(r'href="([^"]+)" download>optimizer.pt<', table)
    assert link is not None
    assert srv.client.get(link.group(1).replace("&amp;", "&")).content == data


def test_delete_needs_confirmation_then_deletes(srv: Server) -> None:
    csrf = _sign_in(srv.client, srv.acme)
    cid = srv.store.list(JOB, tenant="acme", types=("automatic",)).checkpoints[-1].checkpoint_id
    confirm = srv.client.get(f"/ui/checkpoints/{cid}/delete")
    assert confirm.status_code == 200 and 'name="confirm" value="yes"' in confirm.text
    unconfirmed = srv.client.post(f"/ui/checkpoints/{cid}/delete", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "Nothing was deleted" in unconfirmed.text
    assert cid in _acme_ids(srv)
    data = {"csrf_token": csrf, "confirm": "yes"}
    done = srv.client.post(f"/ui/checkpoints/{cid}/delete", data=data)
    assert done.status_code == 200 and "Checkpoint deleted" in done.text
    assert cid not in _acme_ids(srv)
    assert srv.store.verify().ok


def test_deploy_lists_and_undeploys_an_endpoint(srv: Server) -> None:
    csrf = _sign_in(srv.client, srv.acme)
    cid = _acme_ids(srv)[0]
    data = {"csrf_token": csrf, "name": "serving", "gpu_ids": "0, 1", "worker_count": "2"}
    listed = srv.client.post(f"/ui/checkpoints/{cid}/deploy", data=data)
    assert listed.status_code == 200 and "Endpoint deployed." in listed.text
    (endpoint,) = srv.store.endpoints(tenant="acme")
    assert (endpoint.checkpoint_id, endpoint.gpu_ids, endpoint.worker_count) == (cid, ["0", "1"], 2)
    pinned = srv.client.post(
        f"/ui/checkpoints/{cid}/delete", data={"csrf_token": csrf, "confirm": "yes"}
    )
    assert pinned.status_code == 409 and cid in _acme_ids(srv)
    gone = srv.client.post(
        f"/ui/endpoints/{endpoint.endpoint_id}/undeploy", data={"csrf_token": csrf}
    )
    assert "Endpoint removed." in gone.text and srv.store.endpoints(tenant="acme") == []


def test_storage_page_shows_the_tenants_usage(srv: Server) -> None:
    _sign_in(srv.client, srv.acme)
    usage = srv.store.tenant_usage("acme")
    page = srv.client.get("/ui/storage").text
    assert f"({usage.logical_bytes} bytes)" in page and f"({usage.stored_bytes} bytes)" in page
    assert 'aria-label="logical MB by hours' in page and 'aria-label="stored MB by hours' in page


def test_another_tenants_job_and_checkpoint_get_the_unknown_ids_page(srv: Server) -> None:
    mine = _acme_ids(srv)[0]
    csrf = _sign_in(srv.client, srv.other)
    own = srv.store.list("job_other", tenant="other").checkpoints[0].checkpoint_id
    assert srv.client.get(f"/ui/checkpoints/{own}").status_code == 200
    unknown = new_checkpoint_id()
    for a_url, unknown_url in [
        (f"/ui/jobs/{JOB}", "/ui/jobs/job_none"),
        (f"/ui/checkpoints/{mine}", f"/ui/checkpoints/{unknown}"),
        (f"/ui/checkpoints/{mine}/delete", f"/ui/checkpoints/{unknown}/delete"),
    ]:
        theirs, absent = srv.client.get(a_url), srv.client.get(unknown_url)
        assert theirs.status_code == absent.status_code == 404
        strip = (mine, unknown, JOB, "job_none")
        assert _without(theirs.text, strip) == _without(absent.text, strip)
    for url, data in [
        (f"/ui/checkpoints/{mine}/delete", {"confirm": "yes"}),
        (f"/ui/checkpoints/{mine}/deploy", {"name": "x", "worker_count": "1"}),
        (f"/ui/jobs/{JOB}/settings", {"bestMetric": "loss"}),
        (f"/ui/jobs/{JOB}/checkpoints", {}),
    ]:
        assert srv.client.post(url, data=data | {"csrf_token": csrf}).status_code == 404, url
    assert mine in _acme_ids(srv) and srv.store.endpoints(tenant="other") == []
    assert srv.store.job_settings(JOB, tenant="acme").best_metric == "validationLoss"


def _without(text: str, ids: tuple[str, ...]) -> str:
    for found in ids:
        text = text.replace(found, "<id>")
    return text


def test_unknown_pages_and_errors_are_pages_not_json(srv: Server) -> None:
    _sign_in(srv.client, srv.acme)
    response = srv.client.get("/ui/no/such/page")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    bad = srv.client.get(f"/ui/jobs/{JOB}", params={"limit": "many"})
    assert (
        bad.status_code == 400
        and "limit" in bad.text
        and "text/html" in bad.headers["content-type"]
    )


def test_docs_are_served_without_a_cdn(srv: Server) -> None:
    page = srv.client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert srv.client.get(asset).status_code == 200, asset
    schema = srv.client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operation = schema["paths"]["/v2/training/jobs"]["get"]
    assert operation["security"] == [{"bearerAuth": []}]
