"""Cursors for listing a job's checkpoints page by page (keyset pagination).

A list is in a total order: by the sort key (checkpoints lacking it last),
then newest first, then by insertion order. A cursor names the position of a
page's last checkpoint in that order, so the next page starts right after it
however many checkpoints were added or deleted meanwhile. Both catalogs use
this module; each gives its own placeholder and insertion-order column.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from ckptstore.errors import InvalidArgument
from ckptstore.store.catalog.records import CheckpointRecord, ListQuery


@dataclass(frozen=True)
class Position:
    """Where a checkpoint stands in a listing's order."""

    key_missing: bool  # it lacks the sort key (such checkpoints come last)
    key: float | None  # its sort key (None for createdAt, or when missing)
    created_at: float
    inserted: int  # the catalog's insertion order (rowid, sequence)


def encode(position: Position) -> str:
    """The opaque cursor of a position."""
    fields = [int(position.key_missing), position.key, position.created_at, position.inserted]
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


def decode(cursor: str) -> Position:
    """The position a cursor names; InvalidArgument for one this code did not make."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        missing, key, created_at, inserted = json.loads(base64.urlsafe_b64decode(padded))
        return Position(
            bool(missing), None if key is None else float(key), float(created_at), int(inserted)
        )
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("cursor", cursor, "a nextCursor of an earlier page") from exc


def page(
    records: list[CheckpointRecord], inserted: list[int], query: ListQuery
) -> tuple[list[CheckpointRecord], str | None]:
    """Of rows fetched one past the limit: the page, and the cursor of the next page
    when there is one (the extra row says so)."""
    if query.limit is None or len(records) <= query.limit:
        return records, None
    last = query.limit - 1
    return records[: query.limit], encode(position_of(records[last], query.sort_by, inserted[last]))


def position_of(record: CheckpointRecord, sort_by: str, inserted: int) -> Position:
    """Where ``record`` stands in a listing sorted by ``sort_by``."""
    if sort_by == "createdAt":
        return Position(False, None, record.created_at, inserted)
    fields = {"epoch": record.epoch, "step": record.step}
    value = fields[sort_by] if sort_by in fields else record.metrics.get(sort_by)
    if value is None:
        return Position(True, None, record.created_at, inserted)
    return Position(False, float(value), record.created_at, inserted)


def after(
    position: Position,
    key: str | None,
    key_params: list[object],
    descending: bool,
    mark: str,
    inserted: str,
) -> tuple[str, list[object]]:
    """The SQL condition (and its parameters) for rows after ``position``: ``key`` is the
    sort key's expression (None for createdAt) with ``key_params`` for each use of it,
    ``mark`` the placeholder, ``inserted`` the insertion-order column."""
    later = "<" if descending else ">"
    if key is None:  # by creation time alone, in the listing's direction
        sql = f"(created_at {later} {mark} OR (created_at = {mark} AND {inserted} {later} {mark}))"
        return sql, [position.created_at, position.created_at, position.inserted]
    # ties in the key go newest first, then by insertion order (newest first)
    tie = f"(created_at < {mark} OR (created_at = {mark} AND {inserted} < {mark}))"
    tie_params: list[object] = [position.created_at, position.created_at, position.inserted]
    if position.key_missing:
        return f"(({key}) IS NULL AND {tie})", [*key_params, *tie_params]
    sql = f"(({key}) IS NULL OR ({key}) {later} {mark} OR (({key}) = {mark} AND {tie}))"
    return sql, [*key_params, *key_params, position.key, *key_params, position.key, *tie_params]
