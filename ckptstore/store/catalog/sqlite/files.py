"""The files of checkpoints in SQLite (``files`` rows, catalog schema 8)."""

from __future__ import annotations

import sqlite3

from ckptstore.errors import CheckpointNotFound
from ckptstore.store.catalog.base import Files
from ckptstore.store.catalog.records import FileRecord
from ckptstore.store.catalog.sqlite import rows
from ckptstore.store.catalog.sqlite.database import SQLiteDatabase

_COLUMNS = "path, logical_offset, size_bytes, mode, sha256"


def insert_files(conn: sqlite3.Connection, checkpoint_id: str, files: list[FileRecord]) -> None:
    """The file rows of a checkpoint being committed (inside its transaction)."""
    conn.executemany(
        f"INSERT INTO files (checkpoint_id, seq, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (checkpoint_id, seq, f.path, f.offset, f.size_bytes, f.mode, f.sha256)
            for seq, f in enumerate(files)
        ],
    )


def copy_files(conn: sqlite3.Connection, checkpoint_id: str, source_id: str | None) -> None:
    """Give ``checkpoint_id`` the file rows and digest of ``source_id`` (a best copy
    shares them; ``record_digests`` of the source reaches its copies too)."""
    conn.execute(
        f"INSERT INTO files (checkpoint_id, seq, {_COLUMNS})"
        f" SELECT ?, seq, {_COLUMNS} FROM files WHERE checkpoint_id = ?",
        (checkpoint_id, source_id),
    )
    conn.execute(
        "UPDATE checkpoints SET sha256 = (SELECT sha256 FROM checkpoints WHERE checkpoint_id = ?)"
        " WHERE checkpoint_id = ?",
        (source_id, checkpoint_id),
    )


def delete_files(conn: sqlite3.Connection, checkpoint_id: str) -> None:
    conn.execute("DELETE FROM files WHERE checkpoint_id = ?", (checkpoint_id,))


class SQLiteFiles(SQLiteDatabase, Files):
    def files(self, checkpoint_id: str) -> list[FileRecord]:
        with self._read() as conn:
            if rows.checkpoint_row(conn, checkpoint_id) is None:
                raise CheckpointNotFound(checkpoint_id)
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM files WHERE checkpoint_id = ? ORDER BY seq",
                (checkpoint_id,),
            ).fetchall()
        return [FileRecord(*row) for row in found]

    def record_digests(self, checkpoint_id: str, digests: dict[str, str], sha256: str) -> None:
        with self._write() as conn:
            copies = conn.execute(
                "SELECT checkpoint_id FROM checkpoints WHERE parent_id = ?", (checkpoint_id,)
            ).fetchall()
            for target in [checkpoint_id, *(row[0] for row in copies)]:
                conn.executemany(
                    "UPDATE files SET sha256 = ? WHERE checkpoint_id = ? AND path = ?"
                    " AND sha256 IS NULL",
                    [(digest, target, path) for path, digest in digests.items()],
                )
                conn.execute(
                    "UPDATE checkpoints SET sha256 = ? WHERE checkpoint_id = ? AND sha256 IS NULL",
                    (sha256, target),
                )

    def undigested(self) -> list[str]:
        found = (
            self._conn()
            .execute(
                "SELECT c.checkpoint_id FROM checkpoints c WHERE c.status = 'ready'"
                " AND EXISTS (SELECT 1 FROM files f WHERE f.checkpoint_id = c.checkpoint_id"
                " AND f.sha256 IS NULL) ORDER BY c.created_at, c.rowid"
            )
            .fetchall()
        )
        return [row[0] for row in found]
