"""The list answer, byte for byte: every field, its order and spelling (floats, null,
non-ASCII text), the signed URLs, and the errors of bad parameters, pinned by a file
made from the server before the list route had a path of its own
(tests/fixtures/list-answers.json; ``CKPTSTORE_PIN_LIST=1`` writes it anew), and on
PostgreSQL by one made before its list was read in one statement
(list-answers-postgres.json: JSONB gives metrics back with their keys in its order)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptstore.server import listing
from ckptstore.store.catalog import CheckpointRecord
from ckptstore.store.policies import JobSettings
from tests.server_helpers import JOB, Server, make_server

PINNED = Path(__file__).parent / "fixtures" / "list-answers.json"
PINNED_POSTGRES = PINNED.with_name("list-answers-postgres.json")
LIST = f"/v2/training/jobs/{JOB}/checkpoints"
# each request: (path and query, headers: "acme", "other" or "none")
REQUESTS = [
    (LIST, "acme"),
    (f"{LIST}?includeMetrics=false&limit=2", "acme"),
    (f"{LIST}?limit=2&includeMetrics=true&sortOrder=asc", "acme"),
    (f"{LIST}?sortBy=loss&sortOrder=asc&type=manual&type=best", "acme"),
    (f"{LIST}?sortBy=epoch&limit=1000", "acme"),
    (f"{LIST}?sortBy=step&sortOrder=desc&includeMetrics=False&other=1", "acme"),
    (f"{LIST}?limit=3&limit=1", "acme"),
    (f"{LIST}?includeMetrics=0&limit=+2", "acme"),
    (f"{LIST}?cursor=", "acme"),
    (f"{LIST}?cursor={'x' * 513}", "acme"),
    (f"{LIST}?cursor=not-a-cursor", "acme"),
    (f"{LIST}?limit=0", "acme"),
    (f"{LIST}?limit=1001", "acme"),
    (f"{LIST}?limit=ten", "acme"),
    (f"{LIST}?limit=", "acme"),
    (f"{LIST}?sortOrder=up", "acme"),
    (f"{LIST}?sortBy=nonsense", "acme"),
    (f"{LIST}?sortBy=", "acme"),
    (f"{LIST}?type=weird", "acme"),
    (f"{LIST}?includeMetrics=maybe", "acme"),
    (LIST, "other"),
    (LIST, "none"),
    ("/v2/training/jobs/never_seen/checkpoints", "acme"),
    ("/v2/training/jobs/bad%20job/checkpoints", "acme"),
]


def _fill(srv: Server) -> None:
    """Checkpoints with every kind of field value a list shows."""
    metrics = [
        {"loss": 2.5e-05, "validationLoss": 1e-07, "accuracy": 0.9},
        {"loss": 0.5, "validationLoss": 0.61, "perplexity": 1e16},
        {"loss": 3.0, "grad_norm": 123456789.123},
        {},
        {"loss": 0.25, "validationLoss": 0.3},
    ]
    kinds = ["manual", "automatic", "best", "final", "manual"]
    # no best copies of the store's own (their ids are random)
    srv.store.set_job_settings(JOB, JobSettings("neverReported"), tenant="acme")
    for i, (kind, values) in enumerate(zip(kinds, metrics, strict=True)):
        srv.clock.advance(61.5)
        srv.store.put(
            JOB,
            bytes([i]) * (1000 * 10**i),
            tenant="acme",
            checkpoint_id=f"ckpt_pin_{i}",
            type=kind,
            epoch=i if i != 3 else None,
            step=100 * i,
            metrics=values,
            name="réseau ✓ \u2028 «best»" if i == 2 else None,
            description='line\nbreak "quoted" \\ tab\t' if i == 0 else None,
        )
    srv.clock.advance(5)
    pending = CheckpointRecord(
        "ckpt_pin_pending", JOB, "manual", "Pending", None, 9, 900, {"loss": 0.1},
        "pending", 0, 0, srv.clock.now, parent_id="ckpt_pin_1", tenant_id="acme",
    )  # fmt: skip
    srv.store.context.catalog.create_checkpoint(pending)


def _answers(srv: Server) -> list[dict[str, object]]:
    headers = {"acme": srv.acme, "other": srv.other, "none": {}}
    found = []
    for target, who in REQUESTS:
        r = srv.client.get(target, headers=headers[who])
        assert r.headers["content-length"] == str(len(r.content))
        found.append(
            {
                "request": target,
                "key": who,
                "status": r.status_code,
                "headers": {
                    name: value
                    for name, value in r.headers.items()
                    if name not in ("x-request-id", "date", "content-length")
                },
                # how well the store compresses is not the list's business
                "body": re.sub(r'"storedBytes":[1-9][0-9]*', '"storedBytes":1', r.content.decode()),
            }
        )
    return found


@pytest.fixture
def srv(tmp_path: Path):
    server = make_server(tmp_path)
    with server.client:
        _fill(server)
        yield server


@pytest.fixture
def postgres_srv(tmp_path: Path, postgres_url: str):
    server = make_server(tmp_path, catalog=postgres_url)
    with server.client:
        _fill(server)
        yield server


def _assert_pinned(found: list[dict[str, object]], pinned_file: Path) -> None:
    if os.environ.get("CKPTSTORE_PIN_LIST"):
        pinned_file.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n")
    pinned = json.loads(pinned_file.read_text())
    assert [a["request"] for a in found] == [a["request"] for a in pinned]
    for got, want in zip(found, pinned, strict=True):
        assert got == want, got["request"]


def test_list_answers_match_the_pinned_bytes(srv: Server) -> None:
    _assert_pinned(_answers(srv), PINNED)


def test_list_answers_on_postgres_match_the_pinned_bytes(postgres_srv: Server) -> None:
    _assert_pinned(_answers(postgres_srv), PINNED_POSTGRES)


def test_list_answers_hold_what_they_pin(srv: Server) -> None:
    """The pinned file is what the list should say (not only what it said once)."""
    pinned = {(a["request"], a["key"]): a for a in json.loads(PINNED.read_text())}
    first = json.loads(pinned[(LIST, "acme")]["body"])
    assert [c["checkpointId"] for c in first["checkpoints"]] == [
        "ckpt_pin_pending",
        *(f"ckpt_pin_{i}" for i in range(4, -1, -1)),
    ]
    assert first["checkpoints"][0]["downloadUrl"] is None
    assert first["checkpoints"][1]["downloadUrl"].startswith("http")
    assert first["summary"]["bestCheckpoint"]["checkpointId"] == "ckpt_pin_2"
    # the float spellings of Python's json module, not shortest-decimal ones
    assert '"loss":2.5e-05' in pinned[(LIST, "acme")]["body"]
    assert pinned[(f"{LIST}?limit=0", "acme")]["status"] == 422
    assert pinned[(LIST, "none")]["status"] == 401
    assert json.loads(pinned[(LIST, "other")]["body"])["totalCount"] == 0


def _json_module(body: object) -> bytes:
    """What Starlette's JSONResponse renders."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


_TEXT = st.text(st.characters(exclude_categories=("Cs",)))
_NUMBER = (
    st.floats()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.booleans()
    | st.none()
    | _TEXT
)


@given(
    metrics=st.dictionaries(_TEXT, _NUMBER, max_size=6),
    name=_TEXT,
    size=st.integers(min_value=0, max_value=2**70),
)
def test_list_encoding_spells_as_the_json_module(metrics, name, size) -> None:
    body = {"checkpoints": [{"name": name, "metrics": metrics, "sizeBytes": size}], "x": None}
    try:
        expected = _json_module(body)
    except ValueError:  # NaN or an infinity: refused by both
        with pytest.raises(ValueError):
            listing.encode(body, [metrics])
        return
    assert listing.encode(body, [metrics]) == expected


@pytest.mark.parametrize(
    "query, params",
    [
        (b"", listing.ListParams()),
        (b"includeMetrics=false&limit=2", listing.ListParams(include_metrics=False, limit=2)),
        (
            b"sortBy=loss&sortOrder=asc&type=manual&type=best&cursor=abc&limit=1000",
            listing.ListParams(True, "loss", "asc", 1000, ("manual", "best"), "abc"),
        ),
        (b"other=1&includeMetrics=true", listing.ListParams()),
        (b"sortBy=val%20loss", listing.ListParams(sort_by="val loss")),
    ],
)
def test_plain_queries_are_read_by_the_list_route(query, params) -> None:
    assert listing.plain_params(query) == params


@pytest.mark.parametrize(
    "query",
    [
        b"limit=3&limit=1",  # repeated
        b"includeMetrics=0",  # converted by FastAPI
        b"includeMetrics=False",
        b"includeMetrics=maybe",
        b"limit=+2",
        b"limit=02",
        b"limit=0",
        b"limit=1001",
        b"limit=ten",
        b"limit=",
        b"sortBy=",
        b"type=",
        b"cursor=",
        b"cursor=" + b"x" * 513,
    ],
)
def test_other_queries_are_left_to_the_api_route(query) -> None:
    assert listing.plain_params(query) is None


def test_plain_queries_skip_fastapi_parameter_handling(srv: Server, monkeypatch) -> None:
    """The list route answers plain queries; FastAPI's route answers the others."""
    import fastapi.routing

    solved: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args, **kwargs):
        solved.append(kwargs["request"].url.query)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    for query in ("", "limit=2&includeMetrics=false", "limit=02", "limit=0"):
        srv.client.get(f"{LIST}?{query}", headers=srv.acme)
    assert solved == ["limit=02", "limit=0"]
