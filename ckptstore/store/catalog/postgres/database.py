"""PostgresDatabase: a pool of connections, transactions with retry, migrations and an
advisory lock; the base of every PostgreSQL catalog part.

Transactions run at READ COMMITTED and take row locks where two of them could
otherwise both act on what the other was changing (docs/design.md, "The PostgreSQL
catalog"). A deadlock or serialisation failure reruns the whole method: each public
method is one transaction and has no effect outside it until it commits.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import psycopg.errors
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from ckptstore.errors import FormatError, InvalidArgument
from ckptstore.store.catalog.postgres.schema import MIGRATIONS, SCHEMA_VERSION

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D", bound="PostgresDatabase")

Connection = psycopg.Connection[tuple[Any, ...]]

# Advisory lock keys (the first of the two int4 keys; the second is the schema's hash),
# so that stores in different schemas of one database do not wait on each other.
MIGRATION_LOCK = 0x636B7031
GC_LOCK = 0x636B7032
RETRIES = 8
POOL_SIZE = 16


def retried(method: Callable[Concatenate[D, P], R]) -> Callable[Concatenate[D, P], R]:
    """Rerun a one-transaction method that lost a deadlock or a serialisation check."""

    @functools.wraps(method)
    def run(self: D, /, *args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(RETRIES):
            try:
                return method(self, *args, **kwargs)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.001 * 2**attempt)  # let the winner commit before trying again
        raise AssertionError("unreachable")

    return run


class PostgresDatabase:
    """A connection pool over one schema (the URL's ``search_path``, else the user's)."""

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=True,
            name="ckptstore-catalog",
            configure=_configure,
        )
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    # -- transactions ----------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read of several statements that all see one snapshot."""
        with self._pool.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    @contextmanager
    def _single(self) -> Iterator[Connection]:
        """A connection for one statement, in autocommit: no BEGIN and COMMIT round
        trips around it (the key of every request is looked up so)."""
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                _restore(conn)

    def _one(self, query: str, params: tuple[object, ...] | list[object] = ()) -> Any:
        """The first row of a single read (None if there is none)."""
        with self._single() as conn:
            return conn.execute(query, params).fetchone()

    def _all(
        self, query: str, params: tuple[object, ...] | list[object] = ()
    ) -> list[tuple[Any, ...]]:
        """Every row of a single read."""
        with self._single() as conn:
            return conn.execute(query, params).fetchall()

    # -- schema ----------------------------------------------------------------
    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION, holding a lock so that processes opening
        the catalog together migrate it once; refuse a newer schema."""
        with self._write() as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()
            if schema is None or schema[0] is None:
                raise InvalidArgument(
                    "catalog", _redacted(self.url), "a search_path naming an existing schema"
                )
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (MIGRATION_LOCK,)
            )
            conn.execute("CREATE TABLE IF NOT EXISTS ckptstore_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM ckptstore_schema").fetchone()
            version: int = row[0] if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise FormatError(
                    f"catalog schema version {version}; this ckptstore knows up to {SCHEMA_VERSION}"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for step in MIGRATIONS[target]:
                    if isinstance(step, str):
                        conn.execute(step)
                    else:
                        step(conn)
                conn.execute("INSERT INTO ckptstore_schema (version) VALUES (%s)", (target,))

    def schema_version(self) -> int:
        version: int = self._one("SELECT MAX(version) FROM ckptstore_schema")[0]
        return version

    # -- cross-process exclusion -----------------------------------------------
    @contextmanager
    def exclusive(self, *, wait: bool) -> Iterator[bool]:
        """Hold the store's GC lock (a session advisory lock, on a connection of its own
        so that it lasts until released and dies with the process); yields whether it
        was taken (always, when ``wait``)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            key = "(%s, hashtext(current_schema()))"
            if wait:
                conn.execute(f"SELECT pg_advisory_lock{key}", (GC_LOCK,))
            else:
                row = conn.execute(f"SELECT pg_try_advisory_lock{key}", (GC_LOCK,)).fetchone()
                if not (row and row[0]):
                    yield False
                    return
            try:
                yield True
            finally:
                conn.execute(f"SELECT pg_advisory_unlock{key}", (GC_LOCK,))

    def close(self) -> None:
        self._pool.close()


def plain_index_scans(conn: Connection) -> None:
    """Have this transaction's queries (GC's, over indexes of the few rows it looks
    for) read by plain index scans, joined row by row: neither a table scan, nor a
    merge or hash join over a whole index, which stale statistics of a fast-growing
    table can make look cheaper, nor a bitmap scan. Entries of unreferenced_since and
    leases_expiry whose rows commits have since deleted stay until a vacuum; a plain
    scan marks each it finds dead so that later scans skip it, where a bitmap scan
    visits them all again at every GC."""
    conn.execute("SET LOCAL enable_bitmapscan = off")
    conn.execute("SET LOCAL enable_seqscan = off")
    conn.execute("SET LOCAL enable_hashjoin = off")
    conn.execute("SET LOCAL enable_mergejoin = off")


def _restore(conn: Connection) -> None:
    """Give a pooled connection back as the pool hands it out: not in autocommit. One
    whose state is unknown (broken) is left alone: the pool discards it."""
    if conn.pgconn.transaction_status == TransactionStatus.IDLE:
        conn.autocommit = False


def _configure(conn: Connection) -> None:
    """Settings of every pooled connection: no JIT compilation (the catalog's queries
    are short, and compiling one costs more than running it)."""
    conn.execute("SET jit = off")
    conn.commit()


def _redacted(url: str) -> str:
    """The URL without a password, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable catalog URL>"
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items()})
