"""Catalog rows become records field by field, in the record's order."""

from __future__ import annotations

import dataclasses

import pytest

from ckptstore.store.catalog.records import CheckpointRecord
from ckptstore.store.catalog.sqlite import rows


def test_checkpoint_rows_are_read_in_the_record_field_order():
    fields = tuple(f.name for f in dataclasses.fields(CheckpointRecord))
    assert fields == rows.CHECKPOINT_FIELDS  # record_of_row passes them by position
    assert rows.CHECKPOINT_FIELDS[7] == "metrics"


def test_a_checkpoint_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="16 columns"):
        rows.record_of_row(("ckpt_1",) * 15, {})


def test_a_record_made_from_a_row_equals_the_constructed_one():
    row = ("c", "j", "manual", "n", None, 1, 100, "{}", "ready", 10, 5, 1.5, "p", "t", None, "tree")
    made = rows.record_of_row(row, {"loss": 0.5})
    built = CheckpointRecord(*row[:7], {"loss": 0.5}, *row[8:])  # type: ignore[arg-type]
    assert made == built and repr(made) == repr(built) and vars(made) == vars(built)
    assert dataclasses.replace(made, name="m").name == "m"
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "x"  # type: ignore[misc]
