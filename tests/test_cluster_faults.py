"""Faults in a cluster of two ``ckptstore serve`` replicas on one PostgreSQL catalog and
one S3 bucket (moto's server): a replica SIGKILLed mid-upload and mid-GC while the other
keeps serving, and an S3 endpoint that refuses connections, answers 503 or stalls
(``FaultyProxy``, between one replica and moto). Each time: clean errors to clients,
nothing acknowledged lost, and ``verify --read-data`` clean afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.errors import ServerUnavailable
from ckptstore.server.auth import create_api_key
from ckptstore.store.blockstore.s3 import MAX_ATTEMPTS
from ckptstore.testing.live_server import free_port
from tests.conftest import random_bytes

BIN = Path(sys.executable).parent / "ckptstore"
MB = 1_000_000
S3_READ_TIMEOUT_S = 2.0  # the faulted replica's, so that a stall outlasts it quickly


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    url: str


@dataclass
class Cluster:
    env: dict[str, str]
    key: str
    root: Path
    catalog: str
    blocks: str

    @contextmanager
    def replica(self, name: str, **extra_env: str) -> Iterator[Replica]:
        """A ``ckptstore serve`` with a data directory of its own; stopped (or found
        killed) at exit."""
        port = free_port()
        data_dir = self.root / name
        data_dir.mkdir()
        with open(self.root / f"{name}.log", "w") as log:
            proc = subprocess.Popen(
                [str(BIN), "serve", "--data", str(data_dir), "--port", str(port)]
                + ["--log-level", "warning"],
                env={**os.environ, **self.env, **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _healthy(url):
                assert proc.poll() is None and time.monotonic() < deadline, (
                    self.root / f"{name}.log"
                ).read_text()
                time.sleep(0.1)
            yield Replica(proc, url)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=60)

    def verify(self) -> None:
        """``verify --read-data`` of the whole store is clean."""
        with CheckpointStore.open(
            self.root / "check", catalog=self.catalog, blocks=self.blocks
        ) as store:
            report = store.verify(read_data=True)
            assert report.ok, report


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def cluster(postgres_url: str, s3_bucket: str, tmp_path: Path) -> Cluster:
    blocks = f"s3://{s3_bucket}/packs"
    with CheckpointStore.open(tmp_path / "admin", catalog=postgres_url, blocks=blocks) as store:
        _, key = create_api_key(store.context.catalog, "acme", "faults", time.time(), admin=True)
    env = {
        "CKPTSTORE_CATALOG": postgres_url,
        "CKPTSTORE_BLOCKS": blocks,
        "CKPTSTORE_SIGNING_KEYS": "fault-test-key",
        "CKPTSTORE_GC_GRACE": "0",
        # GC only when a test asks for it
        "CKPTSTORE_GC_INTERVAL_S": "3600",
        "CKPTSTORE_GC_AFTER_DELETE_S": "3600",
    }
    return Cluster(env, key, tmp_path, postgres_url, blocks)


def _client(replica: Replica, key: str) -> Client:
    """A client that gives up at once: the test, not the retries, decides what is next."""
    return Client(replica.url, key, attempts=1)


def test_a_replica_killed_mid_upload_loses_nothing_acknowledged(cluster: Cluster) -> None:
    kept = random_bytes(3 * MB, seed=60)
    big = kept[: MB // 2] + random_bytes(60 * MB, seed=61)
    with (
        cluster.replica("a") as a,
        cluster.replica("b") as b,
        _client(a, cluster.key) as one,
        _client(b, cluster.key) as other,
    ):
        acknowledged = one.put("job_kill", kept, epoch=1)
        pending = one.create_pending("job_kill", epoch=2)
        hashed = 0

        def kill_a_midway(n: int) -> None:
            nonlocal hashed
            hashed += n
            if hashed >= 40 * MB and a.proc.poll() is None:
                a.proc.send_signal(signal.SIGKILL)  # while earlier batches are in flight

        started = time.monotonic()
        with pytest.raises(ServerUnavailable):
            one.fill(pending.checkpoint_id, big, progress=kill_a_midway)
        assert time.monotonic() - started < 30
        assert a.proc.wait(timeout=10) == -signal.SIGKILL

        # B serves: the killed upload is still pending, what was acknowledged reads whole
        listed = {c.checkpoint_id: c.status for c in other.list("job_kill").checkpoints}
        assert listed == {acknowledged.checkpoint_id: "ready", pending.checkpoint_id: "pending"}
        with other.open_reader(acknowledged.checkpoint_id) as reader:
            assert reader.read() == kept
        other.gc()  # grace 0: whatever the kill left unreferenced may go now
        cluster.verify()

        # the upload resumes on B, sending only what A never stored
        before = other.bytes_sent
        done = other.fill(pending.checkpoint_id, big)
        assert other.bytes_sent - before < len(big)
        with other.open_reader(done.checkpoint_id) as reader:
            assert reader.read() == big
    cluster.verify()


def test_a_replica_killed_mid_gc_leaves_the_other_a_working_store(
    cluster: Cluster, s3_endpoint: str, s3_bucket: str
) -> None:
    """A's answers from S3 come slowly, so that its GC is killed between deleting two
    pack objects (the catalog rows went first)."""
    live = random_bytes(2 * MB, seed=62)
    with (
        FaultyProxy(s3_endpoint) as proxy,
        cluster.replica("a", CKPTSTORE_S3_ENDPOINT=proxy.url) as a,
        cluster.replica("b") as b,
        _client(a, cluster.key) as one,
        _client(b, cluster.key) as other,
    ):
        kept = other.put("job_gc", live, epoch=0)
        # each in a job of its own: in one job, `kept` would become a delta on the
        # next save, and GC would first store it whole again in a new pack
        garbage = [
            other.put(f"job_gc_{i}", live[:MB] + random_bytes(MB, seed=100 + i), epoch=i + 1)
            for i in range(24)
        ]
        for record in garbage:
            other.delete(record.checkpoint_id)
        packs = _objects(s3_bucket)
        proxy.delay_s = 0.05
        with ThreadPoolExecutor(1) as pool:
            gc_on_a = pool.submit(one.gc)
            while len(_objects(s3_bucket)) == len(packs):
                assert not gc_on_a.done(), "GC on A ended before it could be killed"
                time.sleep(0.005)
            a.proc.send_signal(signal.SIGKILL)
            with pytest.raises(ServerUnavailable):
                gc_on_a.result(timeout=30)
        # a delete A sent before it died may still reach S3 through the proxy
        left = _settled_objects(s3_bucket, proxy.delay_s)
        assert 1 < len(left) < len(packs), "the kill landed mid-way through the deletes"

        with other.open_reader(kept.checkpoint_id) as reader:
            assert reader.read() == live
        # A's lock died with it: B's GC runs and deletes the packs A did not get to
        assert other.gc().packs_deleted == len(left) - 1
        assert [c.checkpoint_id for c in other.list("job_gc").checkpoints] == [kept.checkpoint_id]
        (pack,) = _objects(s3_bucket)  # the garbage shared its first block with `kept`
        assert pack in left
    cluster.verify()


def test_an_s3_outage_behind_one_replica_fails_cleanly_and_loses_nothing(
    cluster: Cluster, s3_endpoint: str, s3_bucket: str
) -> None:
    """S3 answers 503, refuses connections, then stalls longer than the replica's read
    timeout: requests fail with 503 JSON after bounded retries (or succeed once the
    stall ends), the other replica serves throughout, nothing acknowledged is lost."""
    first, second, third = (random_bytes(3 * MB, seed=seed) for seed in (70, 71, 72))
    with (
        FaultyProxy(s3_endpoint) as proxy,
        cluster.replica(
            "a", CKPTSTORE_S3_ENDPOINT=proxy.url, CKPTSTORE_S3_READ_TIMEOUT_S=str(S3_READ_TIMEOUT_S)
        ) as a,
        cluster.replica("b") as b,
        _client(a, cluster.key) as one,
        _client(b, cluster.key) as other,
    ):
        acknowledged = {one.put("job_s3", first, epoch=1).checkpoint_id: first}
        _read_back(one, next(iter(acknowledged)))  # its reads are not the faults counted

        proxy.fault("503")
        started = time.monotonic()
        with pytest.raises(ServerUnavailable) as failed:
            one.put("job_s3", second, epoch=2)
        assert failed.value.http_status == 503 and failed.value.code == "storage_unavailable"
        assert time.monotonic() - started < 30
        assert proxy.failed == MAX_ATTEMPTS  # one PutObject, botocore's attempts, no more
        with other.open_reader(next(iter(acknowledged))) as reader:  # B is not behind it
            assert reader.read() == first

        # a download has sent its headers when the reads fail: the connection is cut
        # short of its Content-Length, which the client takes as a failed transfer
        proxy.fault("refuse")
        started = time.monotonic()
        with pytest.raises(ServerUnavailable), one.open_reader(next(iter(acknowledged))) as reader:
            reader.read()
        assert time.monotonic() - started < 30 and proxy.failed >= MAX_ATTEMPTS

        # answers stall past the read timeout: the first attempt times out (its object
        # landed), a retry after the stall finds it and takes it as its own
        proxy.fault(None)
        proxy.stall_for(S3_READ_TIMEOUT_S * 1.5)
        proxy.connections = 0
        started = time.monotonic()
        third_id = one.put("job_s3", third, epoch=3).checkpoint_id
        acknowledged[third_id] = third
        assert time.monotonic() - started < MAX_ATTEMPTS * S3_READ_TIMEOUT_S + 20
        assert proxy.connections >= 2  # the first attempt timed out and another began
        _read_back(one, third_id)

        # a stall that outlasts every attempt: the upload fails after the read timeouts
        proxy.stall_for(300)
        started = time.monotonic()
        with pytest.raises(ServerUnavailable) as failed:
            one.put("job_s3", second, epoch=4)
        waited = time.monotonic() - started
        assert failed.value.http_status == 503
        # each attempt: up to a second for "100 Continue" (stalled too), then the timeout
        bound_s = MAX_ATTEMPTS * (S3_READ_TIMEOUT_S + 1) + 10
        assert MAX_ATTEMPTS * S3_READ_TIMEOUT_S <= waited < bound_s
        proxy.stall_for(0)

        # after the outage: A writes again, and everything acknowledged reads whole
        acknowledged[one.put("job_s3", second, epoch=2).checkpoint_id] = second
        ready = {c.checkpoint_id for c in other.list("job_s3").checkpoints if c.status == "ready"}
        assert ready == set(acknowledged)
        for checkpoint_id, data in acknowledged.items():
            for client in (one, other):
                with client.open_reader(checkpoint_id) as reader:
                    assert reader.read() == data
        other.gc()
    cluster.verify()


def _read_back(client: Client, checkpoint_id: str) -> None:
    """Wait until the server has read an upload back for its SHA-256 (in the background
    after the commit), so that those reads do not meet the faults injected next."""
    deadline = time.monotonic() + 120
    while client.get(checkpoint_id).sha256 is None:
        assert time.monotonic() < deadline, "the upload's SHA-256 never came"
        time.sleep(0.05)


def _settled_objects(bucket: str, delay_s: float) -> set[str]:
    """The bucket's objects once no request still in flight changes them: the same
    listing twice, several proxy delays apart."""
    listed = _objects(bucket)
    while True:
        time.sleep(10 * delay_s)
        again = _objects(bucket)
        if again == listed:
            return listed
        listed = again


def _objects(bucket: str) -> set[str]:
    from ckptstore.store.blockstore.s3 import s3_client

    listed = s3_client(os.environ["CKPTSTORE_S3_ENDPOINT"]).list_objects_v2(Bucket=bucket)
    return {obj["Key"] for obj in listed.get("Contents", [])}


_SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
    b"Content-Length: 80\r\nConnection: close\r\n\r\n"
    + b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>".ljust(80)
)


class FaultyProxy:
    """A TCP proxy to an S3 endpoint. ``fault("503")`` answers every request 503,
    ``fault("refuse")`` resets every connection, ``stall_for(s)`` holds every answer
    (requests still reach the endpoint) for ``s`` seconds, ``delay_s`` slows each
    answer. A fault closes the connections open before it."""

    def __init__(self, endpoint: str) -> None:
        target = urlsplit(endpoint)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.mode: str | None = None
        self.delay_s = 0.0
        self.failed = 0  # requests refused or answered 503 since the last fault()
        self.connections = 0  # connections accepted
        self._stall_until = 0.0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> FaultyProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()
        self._close_open()

    def fault(self, mode: str | None) -> None:
        self.mode, self.failed = mode, 0
        self._close_open()

    def stall_for(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds

    def _close_open(self) -> None:
        with self._lock:
            for sock in self._open:  # their threads see the end and close them
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self.connections += 1
        if self.mode == "refuse":
            self.failed += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            conn.close()  # a reset, as from a host with nothing listening
            return
        if self.mode == "503":
            self.failed += 1
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and (chunk := conn.recv(65536)):
                    head += chunk
                with suppress(OSError):
                    conn.sendall(_SERVICE_UNAVAILABLE)
            return
        upstream = socket.create_connection(self.target)
        with self._lock:
            self._open.update((conn, upstream))
        requests = threading.Thread(target=self._pump, args=(conn, upstream, False), daemon=True)
        requests.start()
        self._pump(upstream, conn, True)
        requests.join()
        with self._lock:
            self._open.difference_update((conn, upstream))
        conn.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while chunk := source.recv(65536):
                while answers and time.monotonic() < self._stall_until:
                    time.sleep(0.01)
                if answers and self.delay_s:
                    time.sleep(self.delay_s)
                sink.sendall(chunk)
        except OSError:
            pass  # the other side went away
        finally:
            with suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def test_s3_timeouts_come_from_the_environment(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckptstore.errors import InvalidArgument
    from ckptstore.store.blockstore import open_blockstore
    from ckptstore.store.blockstore.s3 import S3BlockStore

    monkeypatch.setenv("CKPTSTORE_S3_READ_TIMEOUT_S", "7.5")
    store = open_blockstore(f"s3://{s3_bucket}/p")
    assert isinstance(store, S3BlockStore)
    assert store.client.meta.config.read_timeout == 7.5
    assert store.client.meta.config.connect_timeout == 10
    for bad in ("0", "-1", "soon", "inf"):
        monkeypatch.setenv("CKPTSTORE_S3_CONNECT_TIMEOUT_S", bad)
        with pytest.raises(InvalidArgument, match="CKPTSTORE_S3_CONNECT_TIMEOUT_S"):
            open_blockstore(f"s3://{s3_bucket}/p")
