"""Stores written by past revisions stay readable (tests/golden/README.md).

Each golden store was written once by the revision its expected.json names and is
never regenerated. The current code opens a copy (opening may migrate the
catalog), lists the same checkpoints with the same fields, verifies every block,
and reads every checkpoint back to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ckptstore import CheckpointStore

GOLDEN = Path(__file__).parent / "golden"
STORES = sorted(path.parent for path in GOLDEN.glob("*/expected.json"))
RECORD_FIELDS = (
    "job_id",
    "type",
    "name",
    "description",
    "epoch",
    "step",
    "metrics",
    "status",
    "size_bytes",
    "created_at",
)


def _unpack(golden: Path, tmp_path: Path) -> Path:
    with tarfile.open(golden / "store.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "store"


def _expected(golden: Path) -> dict[str, Any]:
    return json.loads((golden / "expected.json").read_text())


def _catalog_facts(root: Path) -> tuple[int, set[int]]:
    """The schema version and codec ids of a catalog, read before any code opens it."""
    conn = sqlite3.connect(root / "catalog.sqlite")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        codecs = {row[0] for row in conn.execute("SELECT DISTINCT codec FROM blocks")}
    finally:
        conn.close()
    return version, codecs


def test_golden_stores_cover_every_schema_and_codec() -> None:
    claimed = [_expected(golden) for golden in STORES]
    assert {facts["schema_version"] for facts in claimed} >= {1, 2, 3}
    assert {int(c) for facts in claimed for c in facts["codec_blocks"]} >= set(range(8))


@pytest.mark.parametrize("golden", STORES, ids=[path.name for path in STORES])
def test_golden_store_holds_the_schema_and_codecs_it_claims(golden: Path, tmp_path: Path) -> None:
    expected = _expected(golden)
    version, codecs = _catalog_facts(_unpack(golden, tmp_path))
    assert version == expected["schema_version"]
    assert codecs == {int(codec) for codec in expected["codec_blocks"]}


@pytest.mark.parametrize("golden", STORES, ids=[path.name for path in STORES])
def test_golden_store_reads_back_with_current_code(golden: Path, tmp_path: Path) -> None:
    expected = _expected(golden)
    with CheckpointStore.open(_unpack(golden, tmp_path)) as store:
        for job in expected["jobs"].values():
            tenant, wanted = job["tenant"], job["checkpoints"]
            page = store.list(job["job"], tenant=tenant, limit=None, order="asc")
            assert page.total_count == len(wanted)
            listed = {record.checkpoint_id: record for record in page.checkpoints}
            assert sorted(listed) == sorted(wanted)
            for checkpoint_id, fields in wanted.items():
                record = store.get(checkpoint_id, tenant=tenant)
                for name in RECORD_FIELDS:
                    assert getattr(listed[checkpoint_id], name) == fields[name], name
                    assert getattr(record, name) == fields[name], name
                with store.open_reader(checkpoint_id, tenant=tenant) as reader:
                    data = reader.read()
                assert len(data) == fields["size_bytes"]
                assert hashlib.sha256(data).hexdigest() == fields["sha256"]
                # stored before folders: one file of the default name, digest unknown
                (only,) = store.files(checkpoint_id, tenant=tenant)
                assert (only.path, only.size_bytes) == (f"{checkpoint_id}.ckpt", len(data))
                assert record.layout == "file" and record.sha256 is None
        report = store.verify(read_data=True)
        assert report.ok, report.findings
