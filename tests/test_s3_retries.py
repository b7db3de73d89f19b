"""The S3 block store's retries, against an endpoint that answers every request with
one chosen error: bounded retries on 5xx, throttling and broken connections; none on
other 4xx. botocore's backoff is set to zero so the tests do not wait."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ckptstore import CheckpointStore
from ckptstore.errors import PackNotFound, UnreadableBlockError
from ckptstore.store.blockstore.s3 import (
    MAX_ATTEMPTS,
    ObjectStoreError,
    S3BlockStore,
    S3Location,
    s3_client,
)
from tests.conftest import S3_TEST_ENVIRONMENT, TEST_CONFIG, random_bytes, restore_bytes

MB = 1_000_000


class FailingEndpoint(ThreadingHTTPServer):
    status = 500
    code = "InternalError"
    requests = 0


class Handler(BaseHTTPRequestHandler):
    server: FailingEndpoint
    protocol_version = "HTTP/1.1"  # answers Expect: 100-continue as S3 does

    def answer(self) -> None:
        self.server.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.server.status == 0:  # a connection dropped without an answer
            self.close_connection = True
            self.connection.close()
            return
        body = f"<Error><Code>{self.server.code}</Code><Message>x</Message></Error>".encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FailingEndpoint]:
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    for name, value in S3_TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    server = FailingEndpoint(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def store_at(server: FailingEndpoint) -> S3BlockStore:
    host, port = server.server_address[:2]
    return S3BlockStore(s3_client(f"http://{host!s}:{port}"), S3Location("bucket", "p/"))


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "InternalError"), (503, "SlowDown"), (429, "TooManyRequests"), (0, "")],
)
def test_s3_retries_server_errors_a_bounded_number_of_times(
    endpoint: FailingEndpoint, status: int, code: str
) -> None:
    endpoint.status, endpoint.code = status, code
    with pytest.raises(ObjectStoreError) as info:
        store_at(endpoint).get("pack0001", 0, 10)
    assert isinstance(info.value, OSError)
    assert endpoint.requests == MAX_ATTEMPTS


@pytest.mark.parametrize(("status", "code"), [(403, "AccessDenied"), (400, "InvalidRequest")])
def test_s3_does_not_retry_client_errors(endpoint: FailingEndpoint, status: int, code: str) -> None:
    endpoint.status, endpoint.code = status, code
    with pytest.raises(ObjectStoreError):
        store_at(endpoint).put("pack0001", b"x")
    assert endpoint.requests == 1


def test_s3_missing_object_is_pack_not_found_at_once(endpoint: FailingEndpoint) -> None:
    endpoint.status, endpoint.code = 404, "NoSuchKey"
    with pytest.raises(PackNotFound):
        store_at(endpoint).get("pack0001")
    assert endpoint.requests == 1


def test_an_s3_outage_fails_cleanly_and_loses_nothing(
    endpoint: FailingEndpoint, s3_bucket: str, tmp_path: Path
) -> None:
    """While every request fails (past the retries), a put fails with an OSError and a
    read with UnreadableBlockError; afterwards everything stored reads back whole."""
    store = CheckpointStore.open(
        tmp_path / "store", blocks=f"s3://{s3_bucket}/packs", config=TEST_CONFIG
    )
    with store:
        data, more = random_bytes(2 * MB, seed=50), random_bytes(2 * MB, seed=51)
        kept = store.put("job", data)
        blocks = store.context.blocks
        assert isinstance(blocks, S3BlockStore)
        working, blocks.client = blocks.client, store_at(endpoint).client
        endpoint.status, endpoint.code = 503, "ServiceUnavailable"
        with pytest.raises(OSError):
            store.put("job", more)
        with pytest.raises(UnreadableBlockError):
            restore_bytes(store, kept.checkpoint_id)
        assert endpoint.requests > 0
        blocks.client = working  # the endpoint is back
        assert restore_bytes(store, kept.checkpoint_id) == data
        again = store.put("job", more)
        assert restore_bytes(store, again.checkpoint_id) == more
        ready = [c.checkpoint_id for c in store.list("job").checkpoints if c.status == "ready"]
        assert sorted(ready) == sorted([kept.checkpoint_id, again.checkpoint_id])
        assert store.verify(read_data=True).ok
