"""What a list request asks of PostgreSQL: its page, count, totals, best and latest
checkpoints in one statement, one round trip, whatever the page's size (the messages
psycopg sends, read from libpq's trace of every pooled connection)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from tests.server_helpers import JOB, Server, make_server

LIST = f"/v2/training/jobs/{JOB}/checkpoints"


class Trace:
    """The frontend messages and round trips of libpq's trace."""

    def __init__(self, text: str) -> None:
        lines = [line.split("\t") for line in text.splitlines()]
        self.statements = [
            line[3] for line in lines if line[0] == "F" and line[2] in ("Query", "Execute")
        ]
        self.round_trips = sum(1 for line in lines if line[0] == "B" and line[2] == "ReadyForQuery")


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Trace every connection the catalog's pool hands out while ``state["on"]``."""
    with tempfile.TemporaryFile() as file:
        state: dict[str, Any] = {"on": False, "file": file}
        monkeypatch.setattr(ConnectionPool, "connection", _traced_connection(state))
        yield state


def _traced_connection(state: dict[str, Any]) -> Any:
    handed_out = ConnectionPool.connection

    @contextmanager
    def connection(self: ConnectionPool, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with handed_out(self, *args, **kwargs) as conn:
            if state["on"]:
                conn.pgconn.trace(state["file"].fileno())
                conn.pgconn.set_trace_flags(
                    psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
                )
            yield conn
        # after the pool's own COMMIT, if it sent one
        if state["on"]:
            conn.pgconn.untrace()

    return connection


def _traced_get(srv: Server, traced: dict[str, Any], target: str) -> Trace:
    srv.client.get(target, headers=srv.acme)  # the key found once, then cached
    traced["on"] = True
    try:
        r = srv.client.get(target, headers=srv.acme)
    finally:
        traced["on"] = False
    assert r.status_code == 200, r.text
    traced["file"].seek(0)
    trace = Trace(traced["file"].read().decode())
    traced["file"].seek(0)
    traced["file"].truncate()
    return trace


@pytest.fixture
def srv(tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    server = make_server(tmp_path, catalog=postgres_url)
    with server.client:
        for i in range(12):
            server.clock.advance(1)
            server.store.put(
                JOB,
                bytes([i]) * 100,
                tenant="acme",
                type="best" if i == 4 else "automatic",
                epoch=i,
                metrics={"loss": 1 / (i + 1)},
            )
            server.store.put(JOB, bytes([i]) * 100, tenant="other", epoch=i)
        server.store.settle()  # no rebase or digest reads the catalog meanwhile
        yield server


@pytest.mark.parametrize(
    "query",
    ["", "?limit=5", "?sortBy=epoch&sortOrder=asc&limit=3", "?type=best&type=automatic"],
)
def test_a_list_by_field_is_one_statement_and_one_round_trip(
    srv: Server, traced: dict[str, Any], query: str
) -> None:
    trace = _traced_get(srv, traced, LIST + query)
    assert len(trace.statements) == 1, trace.statements
    assert trace.round_trips == 1


def test_a_list_by_field_with_a_cursor_is_one_round_trip(
    srv: Server, traced: dict[str, Any]
) -> None:
    cursor = srv.client.get(f"{LIST}?limit=5", headers=srv.acme).json()["nextCursor"]
    trace = _traced_get(srv, traced, f"{LIST}?limit=5&cursor={cursor}")
    assert len(trace.statements) == 1 and trace.round_trips == 1


def test_a_list_by_metric_reads_one_snapshot(srv: Server, traced: dict[str, Any]) -> None:
    trace = _traced_get(srv, traced, f"{LIST}?sortBy=loss&limit=5")
    # BEGIN, the isolation level, the metric's page, the summary, COMMIT
    assert trace.statements[0].strip() == '"BEGIN"'
    assert trace.statements[-1].strip() == '"COMMIT"'
    assert len(trace.statements) == 5 and trace.round_trips == 5
