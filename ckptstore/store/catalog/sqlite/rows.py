"""The columns of block and checkpoint rows, and the records they make."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from ckptstore.store.catalog.records import BlockRecord, CheckpointRecord

# the columns of the ``block_rows`` view (schema 12: the pack and base by their ids)
BLOCK_COLUMNS = (
    "block_id, pack_id, pack_offset, stored_len, raw_len, codec, base_id, header_len, width"
)
CHECKPOINT_FIELDS = (
    "checkpoint_id",
    "job_id",
    "type",
    "name",
    "description",
    "epoch",
    "step",
    "metrics",
    "status",
    "size_bytes",
    "stored_bytes",
    "created_at",
    "parent_id",
    "tenant_id",
    "sha256",
    "layout",
)
CHECKPOINT_COLUMNS = ", ".join(CHECKPOINT_FIELDS)
CHECKPOINT_MARKS = ", ".join("?" * len(CHECKPOINT_FIELDS))

Row = tuple[Any, ...]  # a row as sqlite3 gives it (and takes its parameters)

# Block ids are found through ``blocks_id``, an index of their first 8 bytes (schema 12):
# a third of the size of an index of whole ids. A lookup names the prefix, for the
# index, and the whole id, for the row.
ID_PREFIX_LEN = 8


def id_is(column: str = "block_id") -> str:
    """SQL matching one block id; its parameters are ``id_values([block_id])``."""
    return f"substr({column}, 1, {ID_PREFIX_LEN}) = ? AND {column} = ?"


def ids_in(count: int, column: str = "block_id") -> str:
    """SQL matching any of ``count`` block ids; its parameters are ``id_values(ids)``."""
    marks = ",".join("?" * count)
    return f"substr({column}, 1, {ID_PREFIX_LEN}) IN ({marks}) AND {column} IN ({marks})"


def id_values(block_ids: Sequence[bytes]) -> list[bytes]:
    """The parameters of ``id_is`` or ``ids_in``: the ids' prefixes, then the ids."""
    return [*(block[:ID_PREFIX_LEN] for block in block_ids), *block_ids]


def block_columns(alias: str, *, without_id: bool = False) -> str:
    """BLOCK_COLUMNS, each prefixed with a table alias (``block_id`` left out if asked)."""
    columns = BLOCK_COLUMNS.split(", ")[1 if without_id else 0 :]
    return ", ".join(f"{alias}.{column}" for column in columns)


def block(row: Row) -> BlockRecord:
    """The record of a row of BLOCK_COLUMNS."""
    return BlockRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], header_len=row[7], width=row[8]
    )


def block_values(b: BlockRecord) -> Row:
    """A block's values for BLOCK_COLUMNS."""
    return (
        b.block_id,
        b.pack_id,
        b.offset,
        b.stored_len,
        b.raw_len,
        b.codec,
        b.base_id,
        b.header_len,
        b.width,
    )


def checkpoint(row: Row) -> CheckpointRecord:
    """The record of a row of CHECKPOINT_COLUMNS (in the record's field order)."""
    return record_of_row(row, json.loads(row[7]))


def record_of_row(row: Row, metrics: dict[str, float]) -> CheckpointRecord:
    """The record of a row of CHECKPOINT_COLUMNS, with its metrics decoded.

    A list request makes a page of records, and a frozen dataclass's ``__init__`` sets
    its sixteen fields one ``object.__setattr__`` at a time; the record is made here by
    filling its ``__dict__`` in one call instead, which gives an equal record (the
    class has no ``__post_init__`` and no slots: ``_check_record_class``)."""
    if len(row) != len(CHECKPOINT_FIELDS):
        raise ValueError(f"a checkpoint row has {len(CHECKPOINT_FIELDS)} columns, not {len(row)}")
    record = _new_record(CheckpointRecord)
    values = record.__dict__
    values.update(zip(CHECKPOINT_FIELDS, row, strict=True))  # the length is checked
    values["metrics"] = metrics
    return record


def _check_record_class() -> None:
    """Refuse, at import, a CheckpointRecord that ``record_of_row`` would make wrongly."""
    fields = tuple(field.name for field in dataclasses.fields(CheckpointRecord))
    if fields != CHECKPOINT_FIELDS or hasattr(CheckpointRecord, "__post_init__"):
        raise TypeError("CheckpointRecord changed: record_of_row fills its fields by position")
    if "__slots__" in vars(CheckpointRecord):
        raise TypeError("CheckpointRecord has slots: record_of_row fills its __dict__")


_new_record = object.__new__
_check_record_class()


def checkpoint_values(record: CheckpointRecord) -> Row:
    return tuple(
        json.dumps(record.metrics) if name == "metrics" else getattr(record, name)
        for name in CHECKPOINT_FIELDS
    )


def checkpoint_row(conn: sqlite3.Connection, checkpoint_id: str) -> CheckpointRecord | None:
    row = conn.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE checkpoint_id = ?",
        (checkpoint_id,),
    ).fetchone()
    return checkpoint(row) if row else None
