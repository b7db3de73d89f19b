"""The client's one retry policy: what it retries, how long it pauses, and downloads
resumed under it; sleeps are injected, so nothing here waits."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ckptstore.client import Client, RetryPolicy
from ckptstore.client.transport import Transport
from ckptstore.errors import CheckpointNotFound, CorruptBlockError, ServerUnavailable
from tests.conftest import random_bytes
from tests.server_helpers import JOB, make_server

MB = 1_000_000
DATA = random_bytes(3 * MB, seed=77)


def failing(times: int, answer: httpx.Response | None) -> tuple[httpx.MockTransport, list[int]]:
    """A server failing ``times`` requests (``answer``, or a refused connection), then 200."""
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) > times:
            return httpx.Response(200, json={"ok": True})
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        return answer

    return httpx.MockTransport(handle), calls


def transport_on(mock: httpx.MockTransport, pauses: list[float], attempts: int = 6) -> Transport:
    retry = RetryPolicy(attempts=attempts, sleep=pauses.append, jitter=lambda: 0.0)
    return Transport("http://x", "k", http=httpx.Client(transport=mock), retry=retry)


def test_retry_pauses_double_up_to_the_cap_and_jitter_shortens_them() -> None:
    policy = RetryPolicy(backoff_s=0.25, max_backoff_s=1.0, jitter=lambda: 1.0)
    assert [policy.pause_s(n) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert RetryPolicy(jitter=lambda: 0.0).pause_s(1) == 0.125


@pytest.mark.parametrize(
    "answer",
    [
        None,
        httpx.Response(503, json={"error": {"code": "busy", "message": "busy"}}),
        httpx.Response(429, json={"error": {"code": "slow_down", "message": "later"}}),
        httpx.Response(502, text="bad gateway"),
    ],
    ids=["connection", "503", "429", "502-not-json"],
)
def test_retry_recovers_from_failures_with_growing_pauses(answer: httpx.Response | None) -> None:
    mock, calls = failing(3, answer)
    pauses: list[float] = []
    assert transport_on(mock, pauses).request("GET", "/v2/store").json() == {"ok": True}
    assert len(calls) == 4 and pauses == [0.125, 0.25, 0.5]


def test_retry_gives_up_after_its_attempts_as_server_unavailable() -> None:
    mock, calls = failing(100, None)
    pauses: list[float] = []
    with pytest.raises(ServerUnavailable) as info:
        transport_on(mock, pauses, attempts=3).request("GET", "/healthz")
    assert len(calls) == 3 and len(pauses) == 2 and info.value.code == "unreachable"


@pytest.mark.parametrize(
    "answer, error",
    [
        (
            httpx.Response(
                404,
                json={
                    "error": {
                        "code": "not_found",
                        "message": "checkpoint 'c1' not found",
                        "type": "CheckpointNotFound",
                        "fields": {"checkpointId": "c1"},
                    }
                },
            ),
            CheckpointNotFound,
        ),
        (
            # a store error on a 500 is the store's answer, not a passing failure
            httpx.Response(
                500,
                json={
                    "error": {
                        "code": "integrity_error",
                        "message": "block b in pack p is corrupt: bad hash",
                        "type": "CorruptBlockError",
                        "fields": {"blockId": "b", "packId": "p", "reason": "bad hash"},
                    }
                },
            ),
            CorruptBlockError,
        ),
    ],
    ids=["4xx", "store-error-on-500"],
)
def test_retry_never_repeats_an_answer_of_the_store(
    answer: httpx.Response, error: type[Exception]
) -> None:
    mock, calls = failing(100, answer)
    pauses: list[float] = []
    with pytest.raises(error) as info:
        transport_on(mock, pauses).request("GET", "/v2/training/checkpoints/c1")
    assert len(calls) == 1 and pauses == []
    assert str(info.value) == answer.json()["error"]["message"]
    if isinstance(info.value, CorruptBlockError):
        assert (info.value.block_id, info.value.pack_id) == ("b", "p")


class _CutBody(httpx.SyncByteStream):
    """A body that breaks off after ``part``, as a dropped connection does."""

    def __init__(self, part: bytes) -> None:
        self._part = part

    def __iter__(self) -> Iterator[bytes]:
        yield self._part
        raise httpx.ReadError("connection reset by peer")


class BreaksDownloads(httpx.BaseTransport):
    """The in-process server, but the first ``breaks`` block fetches stop half way
    through their body; records how many blocks each fetch asked for."""

    def __init__(self, inner: httpx.BaseTransport, breaks: int) -> None:
        self._inner = inner
        self.breaks = breaks
        self.asked: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.method != "POST" or not request.url.path.endswith("/blocks/fetch"):
            return response
        self.asked.append(len(json.loads(request.content)["blocks"]))
        if self.breaks == 0:
            return response
        self.breaks -= 1
        body = response.read()
        return httpx.Response(
            response.status_code, headers=response.headers, stream=_CutBody(body[: len(body) // 2])
        )


@pytest.fixture
def pushed(tmp_path: Path) -> Iterator[tuple[object, str, str]]:
    server = make_server(tmp_path / "server")
    key = server.acme["Authorization"].split()[1]
    with server.client, Client("http://testserver", key, http=server.client) as client:
        record = client.put(JOB, DATA)
        yield server, key, record.checkpoint_id


def breaking_client(
    server: object, key: str, breaks: int, pauses: list[float], attempts: int
) -> tuple[Client, BreaksDownloads]:
    inner = server.client._transport  # type: ignore[attr-defined]
    flaky = BreaksDownloads(inner, breaks)
    http = httpx.Client(transport=flaky, base_url="http://testserver")
    client = Client("http://testserver", key, http=http, attempts=attempts, sleep=pauses.append)
    return client, flaky


def test_download_cut_off_resumes_under_the_policy(pushed, tmp_path: Path) -> None:
    server, key, checkpoint_id = pushed
    pauses: list[float] = []
    seen: list[int] = []
    client, flaky = breaking_client(server, key, 2, pauses, attempts=6)
    with client:
        out = tmp_path / "model.bin"
        assert client.restore(checkpoint_id, out, progress=seen.append) == len(DATA)
    assert out.read_bytes() == DATA and len(pauses) == 2
    # each attempt asked for the blocks not received yet, and fetched only those
    assert len(flaky.asked) == 3 and flaky.asked[0] > flaky.asked[1] > flaky.asked[2] > 0
    assert sum(seen) == len(DATA)


def test_download_failing_every_attempt_keeps_its_part_for_later(pushed, tmp_path: Path) -> None:
    server, key, checkpoint_id = pushed
    out = tmp_path / "model.bin"
    client, first = breaking_client(server, key, 2, [], attempts=2)
    with client, pytest.raises(ServerUnavailable):
        client.restore(checkpoint_id, out)
    part = tmp_path / "model.bin.part"
    assert part.exists() and not out.exists()
    client, flaky = breaking_client(server, key, 0, [], attempts=2)
    with client:
        assert client.restore(checkpoint_id, out) == len(DATA)
    # the blocks the part file held were not asked for again
    assert len(flaky.asked) == 1 and 0 < flaky.asked[0] < first.asked[-1] < first.asked[0]
    assert out.read_bytes() == DATA and not part.exists()


def test_a_full_disk_is_raised_at_once_not_retried(tmp_path: Path, monkeypatch) -> None:
    import errno

    from ckptstore.errors import StorageFull

    server = make_server(tmp_path)

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    blocks = server.store.context.blocks  # the disk fills under the pack writer
    monkeypatch.setattr(blocks, "put", no_space)
    monkeypatch.setattr(blocks, "begin", no_space)
    pauses: list[float] = []
    key = server.acme["Authorization"].removeprefix("Bearer ")
    with server.client as http:
        client = Client("http://testserver", key, http=http, sleep=pauses.append)
        with pytest.raises(StorageFull) as full:
            client.put(JOB, random_bytes(100_000, seed=5))
    assert full.value.exit_code == 12 and "No space left" in str(full.value)
    assert pauses == []


class _OtherWriterFirst(httpx.BaseTransport):
    """Forwards every request; just before the first commit, another writer runs."""

    def __init__(self, inner: httpx.BaseTransport, other_writer: Callable[[], object]) -> None:
        self._inner = inner
        self._other_writer: Callable[[], object] | None = other_writer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/commit") and self._other_writer is not None:
            run, self._other_writer = self._other_writer, None
            run()
        return self._inner.handle_request(request)


def test_a_commit_that_lost_to_another_writer_is_a_conflict(tmp_path: Path) -> None:
    from ckptstore.errors import CheckpointExists

    server = make_server(tmp_path)
    key = server.acme["Authorization"].removeprefix("Bearer ")
    with server.client as test_http:
        first = Client("http://testserver", key, http=test_http)
        pending = first.create_pending(JOB, type="automatic", epoch=1)
        racing = _OtherWriterFirst(
            test_http._transport, lambda: first.fill(pending.checkpoint_id, DATA)
        )
        second = Client(
            "http://testserver", key, http=httpx.Client(base_url="http://x", transport=racing)
        )
        with pytest.raises(CheckpointExists):
            second.fill(pending.checkpoint_id, random_bytes(200_000, seed=9))
        assert first.open_reader(pending.checkpoint_id).read() == DATA


class _LosesFirstCommitAnswer(httpx.BaseTransport):
    """Forwards every request; the answer to the first commit is lost on the way back,
    as when a connection drops after the server acted."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path.endswith("/commit") and not self.lost:
            self.lost += 1
            response.read()
            raise httpx.ReadError("connection dropped", request=request)
        return response


def test_a_retried_commit_that_had_landed_returns_the_checkpoint(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    key = server.acme["Authorization"].removeprefix("Bearer ")
    with server.client as test_http:
        lossy = _LosesFirstCommitAnswer(test_http._transport)
        http = httpx.Client(base_url="http://testserver", transport=lossy)
        client = Client("http://testserver", key, http=http, sleep=lambda s: None)
        record = client.put(JOB, DATA, epoch=1)
        assert lossy.lost == 1 and record.status == "ready" and record.size_bytes == len(DATA)
        assert client.open_reader(record.checkpoint_id).read() == DATA
