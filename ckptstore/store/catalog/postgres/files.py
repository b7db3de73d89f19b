"""The files of checkpoints in PostgreSQL (``files`` rows, catalog schema 3)."""

from __future__ import annotations

from ckptstore.errors import CheckpointNotFound
from ckptstore.store.catalog.base import Files
from ckptstore.store.catalog.postgres.database import Connection, PostgresDatabase, retried
from ckptstore.store.catalog.records import FileRecord

_COLUMNS = "path, logical_offset, size_bytes, mode, sha256"


def insert_files(conn: Connection, checkpoint_id: str, files: list[FileRecord]) -> None:
    """The file rows of a checkpoint being committed (inside its transaction)."""
    if not files:
        return
    conn.execute(
        f"INSERT INTO files (checkpoint_id, seq, {_COLUMNS})"
        " SELECT %s, s, p, o, n, m, h FROM unnest(%s::bigint[], %s::text[], %s::bigint[],"
        " %s::bigint[], %s::int[], %s::text[]) AS v(s, p, o, n, m, h)",
        (
            checkpoint_id,
            list(range(len(files))),
            [f.path for f in files],
            [f.offset for f in files],
            [f.size_bytes for f in files],
            [f.mode for f in files],
            [f.sha256 for f in files],
        ),
    )


def copy_files(conn: Connection, checkpoint_id: str, source_id: str | None) -> None:
    """Give ``checkpoint_id`` the file rows and digest of ``source_id`` (a best copy
    shares them; ``record_digests`` of the source reaches its copies too)."""
    conn.execute(
        f"INSERT INTO files (checkpoint_id, seq, {_COLUMNS})"
        f" SELECT %s, seq, {_COLUMNS} FROM files WHERE checkpoint_id = %s",
        (checkpoint_id, source_id),
    )
    conn.execute(
        "UPDATE checkpoints SET sha256 = (SELECT sha256 FROM checkpoints WHERE checkpoint_id = %s)"
        " WHERE checkpoint_id = %s",
        (source_id, checkpoint_id),
    )


def delete_files(conn: Connection, checkpoint_id: str) -> None:
    conn.execute("DELETE FROM files WHERE checkpoint_id = %s", (checkpoint_id,))


class PostgresFiles(PostgresDatabase, Files):
    def files(self, checkpoint_id: str) -> list[FileRecord]:
        with self._read() as conn:
            row = conn.execute(
                "SELECT 1 FROM checkpoints WHERE checkpoint_id = %s", (checkpoint_id,)
            ).fetchone()
            if row is None:
                raise CheckpointNotFound(checkpoint_id)
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM files WHERE checkpoint_id = %s ORDER BY seq",
                (checkpoint_id,),
            ).fetchall()
        return [FileRecord(*row) for row in found]

    @retried
    def record_digests(self, checkpoint_id: str, digests: dict[str, str], sha256: str) -> None:
        with self._write() as conn:
            # the checkpoint's row first: a best copy being made holds it FOR SHARE, so
            # the copies are looked for once that copy committed (or it sees the digest)
            conn.execute(
                "UPDATE checkpoints SET sha256 = %s WHERE checkpoint_id = %s AND sha256 IS NULL",
                (sha256, checkpoint_id),
            )
            copies = conn.execute(
                "SELECT checkpoint_id FROM checkpoints WHERE parent_id = %s", (checkpoint_id,)
            ).fetchall()
            targets = [checkpoint_id, *(row[0] for row in copies)]
            paths = list(digests)
            conn.execute(
                "UPDATE files f SET sha256 = v.h FROM unnest(%s::text[], %s::text[]) AS v(p, h)"
                " WHERE f.checkpoint_id = ANY(%s) AND f.path = v.p AND f.sha256 IS NULL",
                (paths, [digests[p] for p in paths], targets),
            )
            conn.execute(
                "UPDATE checkpoints SET sha256 = %s WHERE checkpoint_id = ANY(%s)"
                " AND sha256 IS NULL",
                (sha256, targets),
            )

    def undigested(self) -> list[str]:
        found = self._all(
            "SELECT c.checkpoint_id FROM checkpoints c WHERE c.status = 'ready'"
            " AND EXISTS (SELECT 1 FROM files f WHERE f.checkpoint_id = c.checkpoint_id"
            " AND f.sha256 IS NULL) ORDER BY c.created_at, c.seq"
        )
        return [row[0] for row in found]
