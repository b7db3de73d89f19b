from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from ckptstore import CheckpointStore, StoreConfig
from ckptstore.store.codecs import native
from ckptstore.testing.clock import FakeClock

# Small packs and windows so that tests cross pack and window boundaries cheaply.
TEST_CONFIG = StoreConfig(
    pack_target_bytes=512 * 1024,
    window_bytes=1024 * 1024 + 4093,
    workers=2,
    gc_grace_s=60.0,
    lease_ttl_s=600.0,
)
# A block per tensor (chunker version 2, as stores made before tensor groups cut): for
# tests of runs of tiny blocks, which version 3 makes of a file of small tensors.
PER_TENSOR_CONFIG = dataclasses.replace(
    TEST_CONFIG, chunker=dataclasses.replace(TEST_CONFIG.chunker, tensor_group_bytes=0)
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# Modules whose store tests run against both catalogs (the rest: SQLite only); a test
# that reaches into SQLite itself is marked ``sqlite_only``.
# (test_api_contract runs its store side on both through a fixture of its own.)
BOTH_CATALOGS = {
    "test_deferred_whole_encode",
    "test_deltas",
    "test_folders",
    "test_gc",
    "test_opaque_deltas",
    "test_policies",
    "test_refs",
    "test_roundtrip",
    "test_server_folders",
    "test_uploads",
}


# Modules whose store tests also run with the packs on S3 (moto's server); a test that
# reaches into the pack files on disk is marked ``local_blocks_only``.
BOTH_BLOCKSTORES = {"test_deferred_whole_encode", "test_gc", "test_roundtrip"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: the test reaches into the SQLite catalog")
    config.addinivalue_line(
        "markers", "local_blocks_only: the test reaches into the pack files on disk"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    uses = metafunc.fixturenames
    unmarked = lambda name: metafunc.definition.get_closest_marker(name) is None  # noqa: E731
    kinds = [("sqlite", "local")]
    if "catalog_kind" in uses and module in BOTH_CATALOGS and unmarked("sqlite_only"):
        kinds.append(("postgres", "local"))
    if "blocks_kind" in uses and module in BOTH_BLOCKSTORES and unmarked("local_blocks_only"):
        kinds.append(("sqlite", "s3"))  # PostgreSQL with S3: tests/test_cluster.py
    if len(kinds) > 1:
        metafunc.parametrize(
            ("catalog_kind", "blocks_kind"), kinds, ids=["-".join(kind) for kind in kinds]
        )


@pytest.fixture
def blocks_kind() -> str:
    """Where a store fixture keeps its packs: a local directory, unless the module runs
    both."""
    return "local"


@pytest.fixture
def store_blocks(blocks_kind: str, request: pytest.FixtureRequest) -> Callable[[Path], str | None]:
    """The ``blocks`` argument to open the store at a path with: None (``packs/`` in
    the directory) or a prefix of its own in a fresh bucket on the test S3 endpoint."""
    if blocks_kind == "local":
        return lambda path: None
    bucket = request.getfixturevalue("s3_bucket")
    prefixes: dict[Path, str] = {}

    def _blocks(path: Path) -> str:
        return f"s3://{bucket}/" + prefixes.setdefault(path, f"store{len(prefixes)}")

    return _blocks


@pytest.fixture
def catalog_kind() -> str:
    """The catalog a store fixture opens: SQLite, unless the module runs both."""
    return "sqlite"


@pytest.fixture
def store_catalog(catalog_kind: str) -> Iterator[Callable[[Path], str | None]]:
    """The ``catalog`` argument to open the store at a path with: None (SQLite in the
    directory) or the URL of a fresh PostgreSQL schema, one per store directory."""
    schemas: dict[Path, str] = {}

    def _catalog(path: Path) -> str | None:
        if catalog_kind == "sqlite":
            return None
        if path not in schemas:
            schemas[path] = new_schema()
        return schema_url(schemas[path])

    yield _catalog
    for schema in schemas.values():
        drop_schema(schema)


@pytest.fixture
def open_store(
    tmp_path: Path,
    clock: FakeClock,
    store_catalog: Callable[[Path], str | None],
    store_blocks: Callable[[Path], str | None],
) -> Iterator[Callable[..., CheckpointStore]]:
    opened: list[CheckpointStore] = []

    def _open(path: Path | None = None, config: StoreConfig = TEST_CONFIG) -> CheckpointStore:
        path = path or tmp_path / "store"
        store = CheckpointStore.open(
            path,
            catalog=store_catalog(path),
            blocks=store_blocks(path),
            config=config,
            clock=clock,
        )
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., CheckpointStore]) -> CheckpointStore:
    return open_store()


@pytest.fixture(autouse=True)
def _client_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients keep their cache (downloads, what each job pushed last) in a folder of
    the test's, never in the user's."""
    monkeypatch.setenv("CKPTSTORE_CACHE", str(tmp_path_factory.mktemp("client-cache")))


def random_bytes(n: int, seed: int = 0) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def disk_usage(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            total += (Path(dirpath) / name).stat().st_size
    return total


def restore_bytes(store: CheckpointStore, checkpoint_id: str) -> bytes:
    with store.open_reader(checkpoint_id) as reader:
        return reader.read()


def client_blocks(store: CheckpointStore, data: bytes) -> list[tuple[bytes, bytes]]:
    """(block id, bytes) of ``data`` cut and hashed as a client does before uploading."""
    from concurrent.futures import ThreadPoolExecutor

    from ckptstore.store.chunking.fingerprint import iter_blocks

    with ThreadPoolExecutor(2) as pool:
        return [
            (bid, bytes(view))
            for window in iter_blocks(data, store.context.chunker, pool)
            for bid, view, _ in window
        ]


def require_kernels():
    """The C loops, or a failure in CI (where they must be built) and a skip elsewhere
    (a machine without a C compiler: numpy does the work)."""
    if native.kernels is None:
        unavailable("ckptstore.store.codecs._kernels is not built (no C compiler at install?)")
    return native.kernels


def unavailable(message: str) -> NoReturn:
    """What a test does without something it needs: fail under CI (where everything
    must be there), skip with the reason elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# -- PostgreSQL ----------------------------------------------------------------
# The server the PostgreSQL tests use (trust auth); each test gets a schema of its own.
POSTGRES_URL = os.environ.get(
    "CKPTSTORE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_admin():
    """A connection to the test server, or a failure under CI and a skip elsewhere."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the test extra installs it
        unavailable("psycopg is not installed (pip install 'ckptstore[postgres]')")
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        unavailable(f"no PostgreSQL at {POSTGRES_URL} (CKPTSTORE_TEST_POSTGRES): {error}")


def schema_url(schema: str) -> str:
    """POSTGRES_URL with its connections' search_path set to ``schema``."""
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


def new_schema() -> str:
    """A new, empty schema on the test server (drop it with ``drop_schema``)."""
    import uuid

    schema = f"ckpt_test_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    return schema


def drop_schema(schema: str) -> None:
    with _postgres_admin() as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty schema on the test server, dropped after the test."""
    schema = new_schema()
    try:
        yield schema_url(schema)
    finally:
        drop_schema(schema)


# -- S3 ------------------------------------------------------------------------
# moto's S3 server on an ephemeral loopback port, one per session; a bucket per test.
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a running S3 endpoint; the AWS variables point at it for the session
    (test credentials, so nothing can reach a real account)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:  # pragma: no cover - the test extra installs it
        unavailable(f"moto's S3 server is not installed (pip install 'moto[server]'): {error}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except Exception as error:  # noqa: BLE001 - whatever stops it, the tests cannot run
        unavailable(f"moto's S3 server did not start: {error}")
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in S3_TEST_ENVIRONMENT.items():
            env.setenv(name, value)
        env.setenv("CKPTSTORE_S3_ENDPOINT", endpoint)
        env.delenv("AWS_PROFILE", raising=False)
        yield endpoint
    server.stop()


S3_TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[str]:
    """A new, empty bucket on the test endpoint, emptied and removed after the test."""
    import uuid

    from ckptstore.store.blockstore.s3 import s3_client

    client = s3_client(s3_endpoint)
    bucket = f"ckpt-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield bucket
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)
