"""The columns of block and checkpoint rows in PostgreSQL, and the records they make.

The column lists and block rows are the SQLite catalog's; checkpoint metrics are
JSONB here, which psycopg reads as a dict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from ckptstore.store.catalog.records import CheckpointRecord
from ckptstore.store.catalog.sqlite.rows import (
    BLOCK_COLUMNS,
    CHECKPOINT_FIELDS,
    Row,
    block,
    block_columns,
    block_values,
    record_of_row,
)

CHECKPOINT_COLUMNS = ", ".join(CHECKPOINT_FIELDS)
CHECKPOINT_MARKS = ", ".join(["%s"] * len(CHECKPOINT_FIELDS))
# the same, with the metrics as JSON text, for ``checkpoints`` to decode a page's at once
CHECKPOINT_TEXT_COLUMNS = ", ".join(
    f"{name}::text" if name == "metrics" else name for name in CHECKPOINT_FIELDS
)
BLOCK_MARKS = ", ".join(["%s"] * len(BLOCK_COLUMNS.split(", ")))


def checkpoint(row: Row) -> CheckpointRecord:
    return record_of_row(row, row[7])  # JSONB metrics arrive as a dict


def checkpoints(found: Sequence[Row]) -> list[CheckpointRecord]:
    """The records of rows of CHECKPOINT_COLUMNS or CHECKPOINT_TEXT_COLUMNS: metrics
    given as text are decoded in one ``json.loads`` of them all (psycopg's JSONB loader
    calls it once per row, on bytes whose encoding it then guesses each time)."""
    texts = [row[7] for row in found if isinstance(row[7], str)]
    decoded = iter(json.loads("[" + ",".join(texts) + "]") if texts else [])
    return [
        record_of_row(row, next(decoded) if isinstance(row[7], str) else row[7]) for row in found
    ]


def checkpoint_values(record: CheckpointRecord) -> Row:
    return tuple(
        Jsonb(record.metrics) if name == "metrics" else getattr(record, name)
        for name in CHECKPOINT_FIELDS
    )


def block_arrays(blocks: list[Any]) -> list[list[Any]]:
    """The values of BLOCK_COLUMNS as one list per column (for ``unnest``)."""
    columns: list[list[Any]] = [[] for _ in BLOCK_COLUMNS.split(", ")]
    for b in blocks:
        for column, value in zip(columns, block_values(b), strict=True):
            column.append(value)
    return columns


# unnest's column types, in BLOCK_COLUMNS order
BLOCK_ARRAY_TYPES = (
    "bytea[]",
    "text[]",
    "bigint[]",
    "bigint[]",
    "bigint[]",
    "int[]",
    "bytea[]",
    "int[]",
    "int[]",
)

__all__ = [
    "BLOCK_ARRAY_TYPES",
    "BLOCK_COLUMNS",
    "BLOCK_MARKS",
    "CHECKPOINT_COLUMNS",
    "CHECKPOINT_FIELDS",
    "CHECKPOINT_MARKS",
    "CHECKPOINT_TEXT_COLUMNS",
    "Row",
    "block",
    "block_arrays",
    "block_columns",
    "block_values",
    "checkpoint",
    "checkpoints",
    "checkpoint_values",
]
