"""Tenant isolation over every route: what tenant B can do to, and learn of, tenant A.

Two servers run in lockstep. In the first, tenant A (a plain key) stores
checkpoints, a pending checkpoint, job settings and an endpoint; in its twin A
never stored anything. Tenant B makes the same set-up in both, then sends each
probe of the matrix (every route, against each of A's objects) to both
servers with the same ids. Since in the twin A's ids do not exist, B must get
there exactly the answer it gets where they do: same status, same body (its
error ``code`` and ``type`` included) once the ids each server drew at random
are replaced by labels. After every probe A's own view of its data (records,
listings, settings, endpoint, usage and bytes) is as it was, and B's view of
its own (usage, listings, storedBytes) is the same in both servers.

``ROUTES`` says how B calls each route; ``test_the_matrix_covers_every_route``
fails until a new route is added there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import routing

from ckptstore.server.auth import create_api_key
from tests.conftest import client_blocks, random_bytes
from tests.server_helpers import JOB, Server, frames, make_server

A_JOB = "job_alpha_only"  # a job only A has
SHARED_JOB = JOB  # a job id both tenants use, each for its own checkpoints
SIZE = 600_000
SHARED_BY_DATA = random_bytes(SIZE, seed=71)  # stored by both A and B, B by PUT data
SHARED_BY_BLOCKS = random_bytes(SIZE, seed=72)  # stored by both, B by the blocks protocol
SECRET = random_bytes(SIZE, seed=73)  # A's alone

Request = dict[str, Any]
CKPT_OF = "/v2/training/checkpoints/"


@dataclass
class World:
    """One server, the ids drawn in it and labels for them."""

    server: Server
    a: dict[str, str]  # A's headers (also present in the twin, which has no A data)
    b: dict[str, str]  # B's headers
    ids: dict[str, str] = field(default_factory=dict)  # name -> id drawn in this world
    labels: dict[str, str] = field(default_factory=dict)  # id -> label
    fresh: int = 0  # pending checkpoints B made for probes
    new_ids: int = 0  # ids first seen in answers

    def call(self, request: Request) -> Any:
        return self.server.client.request(**request)

    def label(self, text: str, learn: bool = True) -> str:
        """``text`` with each random id replaced by its label and each URL signature
        masked. A new id gets the next label (``learn``) in the order ids first appear,
        the same in both worlds while they answer alike."""

        def name(match: re.Match[str]) -> str:
            found = match.group(0)
            if found not in self.labels:
                if not learn:
                    return "<unknown>"
                self.new_ids += 1
                self.labels[found] = f"<new{self.new_ids}>"
            return self.labels[found]

        text = _IDS.sub(name, text)
        return _SIGNATURE.sub("signature=<sig>", text)

    def remember(self, name: str, value: str) -> str:
        self.ids[name] = value
        self.labels[value] = f"<{name}>"
        return value


_IDS = re.compile(r"ckpt_[0-9a-f]{20}|ep_[0-9a-f]{16}")
_SIGNATURE = re.compile(r"signature=[A-Za-z0-9_-]+")


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _save(world: World, headers: dict[str, str], job: str, data: bytes, **body: Any) -> str:
    client = world.server.client
    created = client.post(f"/v2/training/jobs/{job}/checkpoints", headers=headers, json=body)
    created = _ok(created, 201)
    cid: str = created["checkpointId"]
    _ok(client.put(f"/v2/training/checkpoints/{cid}/data", headers=headers, content=data))
    return cid


def _save_by_blocks(world: World, headers: dict[str, str], job: str, data: bytes) -> str:
    client = world.server.client
    created = client.post(f"/v2/training/jobs/{job}/checkpoints", headers=headers, json={})
    cid: str = _ok(created, 201)["checkpointId"]
    blocks = client_blocks(world.server.store, data)
    ids = [bid.hex() for bid, _ in blocks]
    base = f"/v2/training/checkpoints/{cid}"
    missing = _ok(client.post(f"{base}/blocks/missing", headers=headers, json={"blockIds": ids}))
    sent = [(bid, chunk) for bid, chunk in blocks if bid.hex() in missing["missing"]]
    _ok(client.put(f"{base}/blocks", headers=headers, content=frames(sent)), 204)
    _ok(client.post(f"{base}/commit", headers=headers, json={"blockIds": ids}))
    return cid


def _set_up_a(world: World) -> None:
    client, a = world.server.client, world.a
    world.remember("A.sharedByData", _save(world, a, SHARED_JOB, SHARED_BY_DATA))
    world.remember("A.sharedByBlocks", _save(world, a, SHARED_JOB, SHARED_BY_BLOCKS))
    metrics = {"validationLoss": 0.5, "loss": 0.4}
    world.remember("A.ready", _save(world, a, A_JOB, SECRET, metrics=metrics, epoch=3))
    pending = client.post(f"/v2/training/jobs/{A_JOB}/checkpoints", headers=a, json={})
    world.remember("A.pending", _ok(pending, 201)["checkpointId"])
    settings = {"bestMetric": "loss", "bestMode": "min", "keepAutomatic": 7}
    _ok(client.put(f"/v2/training/jobs/{A_JOB}/settings", headers=a, json=settings))
    body = {"name": "alpha-serving", "checkpointId": world.ids["A.ready"], "gpuIds": ["0"]}
    world.remember("A.endpoint", _ok(client.post("/v2/endpoints", headers=a, json=body), 201)["id"])


def _set_up_b(world: World) -> None:
    client, b = world.server.client, world.b
    world.remember("B.sharedByData", _save(world, b, SHARED_JOB, SHARED_BY_DATA))
    world.remember("B.sharedByBlocks", _save_by_blocks(world, b, SHARED_JOB, SHARED_BY_BLOCKS))
    own = _ok(client.get(f"/v2/training/checkpoints/{world.ids['B.sharedByData']}", headers=b))
    query = own["downloadUrl"].partition("?")[2]  # B's own signature, to try on A's ids
    world.ids["B.query"] = query


def _open_world(tmp_path: Path, with_a: bool) -> Iterator[World]:
    server = make_server(tmp_path)
    _, a_key = create_api_key(server.store.context.catalog, "alpha", "tests", server.clock.now)
    world = World(server, {"Authorization": f"Bearer {a_key}"}, server.other)
    with server.client:
        if with_a:
            _set_up_a(world)
        _set_up_b(world)
        server.store.settle()
        yield world


@dataclass(frozen=True)
class Target:
    """One of A's objects as B names it: an id for an id slot, and for the block kind
    the ids and bytes of blocks only A stored."""

    kind: str
    id: str
    block_ids: list[str]
    frames: bytes


@dataclass
class Worlds:
    mine: World  # A's data is here
    twin: World  # and not here
    targets: dict[str, Target]
    a_view: dict[str, Any]  # A's view after set-up


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worlds]:
    mine_gen = _open_world(tmp_path_factory.mktemp("mine"), with_a=True)
    twin_gen = _open_world(tmp_path_factory.mktemp("twin"), with_a=False)
    mine, twin = next(mine_gen), next(twin_gen)
    # B names A's ids in both worlds: in the twin they are ids nobody has
    twin.labels |= {cid: label for cid, label in mine.labels.items() if label.startswith("<A.")}
    secret = client_blocks(mine.server.store, SECRET)
    block_ids = [bid.hex() for bid, _ in secret]
    targets = {
        kind: Target(kind, mine.ids[name], block_ids, frames(secret))
        for kind, name in (
            ("ready", "A.ready"),
            ("pending", "A.pending"),
            ("endpoint", "A.endpoint"),
        )
    }
    # references (store/refs.py): a unique prefix of A's id, and an alias of A's job
    prefix = mine.ids["A.ready"][: len("ckpt_") + 8]
    targets["prefix"] = Target("prefix", prefix, block_ids, frames(secret))
    targets["alias"] = Target("alias", f"{A_JOB}:latest", block_ids, frames(secret))
    targets["job"] = Target("job", A_JOB, block_ids, frames(secret))
    targets["sharedJob"] = Target("sharedJob", SHARED_JOB, block_ids, frames(secret))
    targets["blocks"] = Target("blocks", block_ids[0], block_ids, frames(secret))
    yield Worlds(mine, twin, targets, _a_view(mine))
    for gen in (mine_gen, twin_gen):
        gen.close()


def _a_view(world: World) -> dict[str, Any]:
    """Everything A sees of its data, ids labelled (only A's own ids appear)."""
    client, a = world.server.client, world.a
    gets = [
        f"/v2/training/checkpoints/{world.ids[name]}"
        for name in ("A.ready", "A.pending", "A.sharedByData", "A.sharedByBlocks")
    ] + [
        f"/v2/endpoints/{world.ids['A.endpoint']}",
        "/v2/endpoints",
        "/v2/training/jobs",
        "/v2/stats",
        *(
            f"/v2/training/jobs/{job}/{what}"
            for job in (A_JOB, SHARED_JOB)
            for what in ("checkpoints", "summary", "settings")
        ),
    ]
    view: dict[str, Any] = {}
    for path in gets:
        response = client.get(path, headers=a)
        view[path] = (response.status_code, world.label(response.text, learn=False))
    for name in ("A.ready", "A.sharedByData", "A.sharedByBlocks"):
        url = client.get(f"/v2/training/checkpoints/{world.ids[name]}", headers=a).json()
        got = client.get(url["downloadUrl"])
        view[f"bytes of {name}"] = (got.status_code, hashlib.sha256(got.content).hexdigest())
    return view


def _b_view(world: World) -> dict[str, Any]:
    """What B sees of its own data: usage, listings (its jobs and A's job ids), its
    checkpoints' storedBytes and its endpoints."""
    client, b = world.server.client, world.b
    gets = [
        "/v2/stats",
        "/v2/training/jobs",
        "/v2/endpoints",
        *(f"{CKPT_OF}{world.ids[n]}" for n in ("B.sharedByData", "B.sharedByBlocks")),
        *(
            f"/v2/training/jobs/{job}/{what}"
            for job in (A_JOB, SHARED_JOB)
            for what in ("checkpoints", "summary", "settings")
        ),
    ]
    view = {}
    for path in gets:
        response = client.get(path, headers=b)
        view[world.label(path)] = (response.status_code, world.label(response.text))
    return view


# -- the table: how B calls each route against one of A's objects ------------------------

Call = Callable[[World, Target], Request]


@dataclass(frozen=True)
class Probe:
    """B's call of one route; ``status``: the answer it must get (that of an id that does
    not exist); ``block_status``: for a route taking block ids, the answer when B names
    A's blocks in a checkpoint of its own; ``alias_status``: when B names A's job's alias.
    ``per_object``: whether the route names an
    object at all (routes that do not are probed once)."""

    call: Call
    status: int
    block_status: int | None = None
    per_object: bool = True
    alias_status: int | None = None  # for ``JOB:latest`` where a job id goes: not a job id


def _at(template: str, method: str, **body: Any) -> Call:
    """B calls ``template`` with the target's id in its one path parameter."""

    def call(world: World, target: Target) -> Request:
        url = re.sub(r"\{\w+\}", target.id, template)
        return {"method": method, "url": url, "headers": world.b, **body}

    return call


def _plain(path: str, method: str = "GET") -> Probe:
    """A route naming no object, answered as a 200 for B's key."""
    return Probe(_at(path, method), 200, per_object=False)


def _fresh_pending(world: World) -> str:
    """A new pending checkpoint of B's, made the same way in both worlds."""
    world.fresh += 1
    body = {"name": f"probe {world.fresh}"}
    created = world.call(
        {"method": "POST", "url": f"/v2/training/jobs/{SHARED_JOB}/checkpoints", "headers": world.b}
        | {"json": body}
    )
    return world.remember(f"B.probe{world.fresh}", _ok(created, 201)["checkpointId"])


def _blocks_route(suffix: str, method: str, body: Callable[[Target], dict[str, Any]]) -> Call:
    """A blocks route: against A's checkpoint ids in the path; for A's blocks, on a new
    pending checkpoint of B's that names or sends them."""

    def call(world: World, target: Target) -> Request:
        cid = _fresh_pending(world) if target.kind == "blocks" else target.id
        url = f"/v2/training/checkpoints/{cid}/{suffix}"
        return {"method": method, "url": url, "headers": world.b, **body(target)}

    return call


def _signed(method: str) -> Call:
    """B's own URL signature and expiry, on the target's id."""

    def call(world: World, target: Target) -> Request:
        url = f"/signed/{target.id}?{world.ids['B.query']}"
        return {"method": method, "url": url}

    return call


def _signed_file(method: str) -> Call:
    """B's own URL signature and expiry, on a file of the target's id."""

    def call(world: World, target: Target) -> Request:
        url = f"/signed/{target.id}/files/model.bin?{world.ids['B.query']}"
        return {"method": method, "url": url}

    return call


def _held_list(world: World, target: Target) -> Request:
    """B's own checkpoint's block list, paired with the target as the checkpoint held."""
    url = f"{CKPT_OF}{world.ids['B.sharedByData']}/blocks"
    return {"method": "GET", "url": url, "headers": world.b, "params": {"held": target.id}}


def _fetch_blocks(world: World, target: Target) -> Request:
    """A block fetch: of A's blocks from B's own checkpoint, else of B's own blocks from
    the target's checkpoint."""
    own = client_blocks(world.server.store, SHARED_BY_DATA)[0][0].hex()
    if target.kind == "blocks":
        url = f"{CKPT_OF}{world.ids['B.sharedByData']}/blocks/fetch"
        return {
            "method": "POST",
            "url": url,
            "headers": world.b,
            "json": {"blocks": target.block_ids},
        }
    url = f"{CKPT_OF}{target.id}/blocks/fetch"
    return {"method": "POST", "url": url, "headers": world.b, "json": {"blocks": [own]}}


def _deploy(world: World, target: Target) -> Request:
    body = {"name": "b-serving", "checkpointId": target.id}
    return {"method": "POST", "url": "/v2/endpoints", "headers": world.b, "json": body}


CKPT = "/v2/training/checkpoints/{checkpointId}"
JOBS = "/v2/training/jobs/{jobId}"
ROUTES: dict[tuple[str, str], Probe] = {
    # a job id names nothing across tenants: B's call is about B's own job of that name
    ("GET", f"{JOBS}/checkpoints"): Probe(_at(f"{JOBS}/checkpoints", "GET"), 200, alias_status=422),
    ("POST", f"{JOBS}/checkpoints"): Probe(
        _at(f"{JOBS}/checkpoints", "POST", json={"name": "b's"}), 201, alias_status=422
    ),
    ("GET", f"{JOBS}/summary"): Probe(_at(f"{JOBS}/summary", "GET"), 200, alias_status=422),
    ("GET", f"{JOBS}/settings"): Probe(_at(f"{JOBS}/settings", "GET"), 200, alias_status=422),
    ("PUT", f"{JOBS}/settings"): Probe(
        _at(f"{JOBS}/settings", "PUT", json={"bestMetric": "loss", "keepAutomatic": 2}),
        200,
        alias_status=422,
    ),
    ("GET", "/v2/training/jobs"): _plain("/v2/training/jobs"),
    ("GET", CKPT): Probe(_at(CKPT, "GET"), 404),
    ("DELETE", CKPT): Probe(_at(CKPT, "DELETE"), 404),
    ("PUT", f"{CKPT}/data"): Probe(_at(f"{CKPT}/data", "PUT", content=SECRET), 404),
    ("POST", f"{CKPT}/blocks/missing"): Probe(
        _blocks_route("blocks/missing", "POST", lambda t: {"json": {"blockIds": t.block_ids}}),
        404,
        block_status=200,  # and every one of A's blocks is reported missing
    ),
    ("PUT", f"{CKPT}/blocks"): Probe(
        _blocks_route("blocks", "PUT", lambda t: {"content": t.frames}), 404, block_status=204
    ),
    ("POST", f"{CKPT}/commit"): Probe(
        # A's blocks named, not sent: refused as for blocks nobody has
        _blocks_route("commit", "POST", lambda t: {"json": {"blockIds": t.block_ids}}),
        404,
        block_status=422,
    ),
    ("GET", f"{CKPT}/blocks"): Probe(_held_list, 404),
    ("POST", f"{CKPT}/blocks/fetch"): Probe(
        # A's blocks named in a fetch on B's own checkpoint: refused as blocks nobody has
        _fetch_blocks,
        404,
        block_status=422,
    ),
    ("GET", "/signed/{checkpointId}"): Probe(_signed("GET"), 403),
    ("HEAD", "/signed/{checkpointId}"): Probe(_signed("HEAD"), 403),
    ("GET", f"{CKPT}/files"): Probe(_at(f"{CKPT}/files", "GET"), 404),
    ("GET", "/signed/{checkpointId}/files/{path:path}"): Probe(_signed_file("GET"), 403),
    ("HEAD", "/signed/{checkpointId}/files/{path:path}"): Probe(_signed_file("HEAD"), 403),
    ("POST", "/v2/endpoints"): Probe(_deploy, 404),
    ("GET", "/v2/endpoints"): _plain("/v2/endpoints"),
    ("GET", "/v2/endpoints/{endpointId}"): Probe(_at("/v2/endpoints/{endpointId}", "GET"), 404),
    ("DELETE", "/v2/endpoints/{endpointId}"): Probe(
        _at("/v2/endpoints/{endpointId}", "DELETE"), 404
    ),
    ("PATCH", "/v2/endpoints/{endpointId}"): Probe(
        _at("/v2/endpoints/{endpointId}", "PATCH", json={"name": "b-renamed"}), 404
    ),
    ("GET", "/healthz"): _plain("/healthz"),
    ("GET", "/v2/stats"): _plain("/v2/stats"),
    ("GET", "/v2/store"): _plain("/v2/store"),
    # store-wide: an admin key's only
    ("GET", "/metrics"): Probe(_at("/metrics", "GET"), 403, per_object=False),
    ("POST", "/v2/gc"): Probe(_at("/v2/gc", "POST"), 403, per_object=False),
    # the web interface: a key alone opens no page (it needs a session, so every page
    # sends B to the same sign-in page); B signed in is probed in tests/test_ui.py
    **{
        (method, path): Probe(_at(path, method), 200, per_object="{" in path)
        for method, path in (
            ("GET", "/ui"),
            ("GET", "/ui/"),
            ("GET", "/ui/login"),
            ("GET", "/ui/jobs"),
            ("GET", "/ui/jobs/{job_id}"),
            ("POST", "/ui/jobs/{job_id}/settings"),
            ("POST", "/ui/jobs/{job_id}/checkpoints"),
            ("GET", "/ui/checkpoints/{checkpoint_id}"),
            ("POST", "/ui/checkpoints/{checkpoint_id}/deploy"),
            ("GET", "/ui/checkpoints/{checkpoint_id}/delete"),
            ("POST", "/ui/checkpoints/{checkpoint_id}/delete"),
            ("GET", "/ui/endpoints"),
            ("POST", "/ui/endpoints/{endpoint_id}/undeploy"),
            ("GET", "/ui/storage"),
            ("POST", "/ui/logout"),
        )
    },
    ("GET", "/ui/{rest:path}"): Probe(_at("/ui/{rest}", "GET"), 404),
    ("POST", "/ui/login"): Probe(_at("/ui/login", "POST"), 401, per_object=False),
    ("GET", "/"): _plain("/"),
    # / redirects to the pages, which answer GET only
    ("HEAD", "/"): Probe(_at("/", "HEAD"), 405, per_object=False),
    # the API's documentation: the same for every caller
    **{
        (method, path): _plain(path, method)
        for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
        for method in ("GET", "HEAD")
    },
}
OBJECTS = ("ready", "pending", "endpoint", "job", "sharedJob", "blocks", "prefix", "alias")
CELLS = [
    (route, kind)
    for route, probe in ROUTES.items()
    for kind in (OBJECTS if probe.per_object else ("none",))
]


def _app_routes(server: Server) -> set[tuple[str, str]]:
    app = server.client.app
    # FastAPI 0.16x nests included routers; iter_route_contexts flattens them
    flatten = getattr(routing, "iter_route_contexts", lambda routes: routes)
    return {
        (method, route.path)
        for route in flatten(app.routes)
        for method in (getattr(route, "methods", None) or ())
    }


def test_the_matrix_covers_every_route(worlds: Worlds) -> None:
    server = worlds.mine.server
    assert _app_routes(server) == set(ROUTES)
    schema = server.client.get("/openapi.json").json()
    documented = {(m.upper(), path) for path, ops in schema["paths"].items() for m in ops}
    # OpenAPI spells a path parameter "{path}" where the route has "{path:path}"
    assert documented <= {(m, re.sub(r"\{(\w+):\w+\}", r"{\1}", p)) for m, p in ROUTES}


@pytest.mark.parametrize(("route", "kind"), CELLS, ids=[f"{m} {p} {k}" for (m, p), k in CELLS])
def test_tenant_b_gets_the_answer_of_an_absent_id_and_changes_nothing(
    worlds: Worlds, route: tuple[str, str], kind: str
) -> None:
    probe = ROUTES[route]
    target = worlds.targets.get(kind, Target("none", "", [], b""))
    answers = []
    for world in (worlds.mine, worlds.twin):
        response = world.call(probe.call(world, target))
        world.server.store.settle()
        answers.append((response.status_code, world.label(response.text), response))
    (status, body, response), (twin_status, twin_body, _) = answers
    wanted = probe.block_status if kind == "blocks" and probe.block_status else probe.status
    wanted = probe.alias_status if kind == "alias" and probe.alias_status else wanted
    assert twin_status == wanted, twin_body
    assert (status, body) == (twin_status, twin_body)
    if status >= 400 and route[0] != "HEAD" and not route[1].startswith("/ui"):
        error = response.json()["error"]  # the web interface's errors are pages
        assert error["code"] and error["message"]
    if route == ("POST", f"{CKPT}/blocks/missing") and kind == "blocks":
        assert response.json()["missing"] == target.block_ids
    # A's data is as it was; B's view of its own is the same with A or without
    assert _a_view(worlds.mine) == worlds.a_view
    assert _b_view(worlds.mine) == _b_view(worlds.twin)
    for world in (worlds.mine, worlds.twin):
        report = world.server.store.verify()
        assert report.ok, report


def test_b_is_charged_for_shared_bytes_as_if_alone(worlds: Worlds) -> None:
    mine, twin = worlds.mine, worlds.twin
    for name in ("B.sharedByData", "B.sharedByBlocks"):
        got = [
            w.server.client.get(CKPT_OF + w.ids[name], headers=w.b).json()["storedBytes"]
            for w in (mine, twin)
        ]
        assert got[0] == got[1] > 0
    stats = [w.server.client.get("/v2/stats", headers=w.b).json() for w in (mine, twin)]
    assert stats[0] == stats[1] and stats[0]["storedBytes"] > 0


def test_store_wide_routes_need_an_admin_key(worlds: Worlds) -> None:
    client = worlds.mine.server.client
    for method, path in (("GET", "/metrics"), ("POST", "/v2/gc")):
        for headers in (worlds.mine.a, worlds.mine.b):
            refused = client.request(method, path, headers=headers)
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "admin_required"
    admin = worlds.mine.server.acme
    assert client.get("/metrics", headers=admin).status_code == 200


def test_a_signed_url_opens_only_as_signed(worlds: Worlds) -> None:
    """A's URL opens A's bytes; B's signature on A's id, A's signature on another id
    or expiry, fail as a URL of an id that does not exist does."""
    mine = worlds.mine
    client = mine.server.client
    url = client.get(f"{CKPT.format(checkpointId=mine.ids['A.ready'])}", headers=mine.a).json()[
        "downloadUrl"
    ]
    path, _, query = url.partition("/signed/")[2].partition("?")
    assert client.get(f"/signed/{path}?{query}").content == SECRET
    expires = re.search(r"expires=(\d+)", query)
    assert expires is not None
    altered_id = path[:-1] + ("0" if path[-1] != "0" else "1")
    tries = [
        f"/signed/{path}?{mine.ids['B.query']}",  # B's signature
        f"/signed/{altered_id}?{query}",  # another id
        f"/signed/{mine.ids['B.sharedByData']}?{query}",  # B's checkpoint, A's signature
        f"/signed/{path}?{query.replace(expires.group(1), str(int(expires.group(1)) + 1))}",
    ]
    absent = client.get(f"/signed/ckpt_{'0' * 20}?{query}")
    assert absent.status_code == 403
    for attempt in tries:
        got = client.get(attempt)
        assert got.status_code == 403, attempt
        assert got.json()["error"]["code"] == absent.json()["error"]["code"] == "invalid_signature"
