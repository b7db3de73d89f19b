"""The server's JSON objects as the store's record types (the same types ``CheckpointStore``
returns), and the one figure the server gives that the store has no type for."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ckptstore.formatting import parse_iso_time
from ckptstore.store.catalog.base import CheckpointRecord, EndpointRecord, FileRecord
from ckptstore.store.checkpoints import JobSummary
from ckptstore.store.gc import GcReport


def record_of(body: dict[str, Any]) -> CheckpointRecord:
    """An API checkpoint object as the engine's record (tenant left empty: the key's own)."""
    return CheckpointRecord(
        checkpoint_id=body["checkpointId"],
        job_id=body["jobId"],
        type=body["type"],
        name=body["name"],
        description=body.get("description"),
        epoch=body.get("epoch"),
        step=body.get("step"),
        metrics=body.get("metrics") or {},
        status=body["status"],
        size_bytes=body["sizeBytes"],
        stored_bytes=body["storedBytes"],
        created_at=parse_iso_time(body["createdAt"]),
        parent_id=body.get("parentId"),
        sha256=body.get("sha256"),
        layout=body.get("layout", "file"),
    )


def file_of(body: dict[str, Any]) -> FileRecord:
    """An entry of ``GET .../files`` as the engine's record; offsets follow from the
    order and sizes (``files_of``)."""
    return FileRecord(body["path"], 0, body["sizeBytes"], body["mode"], body.get("sha256"))


def files_of(bodies: list[dict[str, Any]]) -> list[FileRecord]:
    """The entries of ``GET .../files``, with their offsets in the checkpoint."""
    records: list[FileRecord] = []
    offset = 0
    for body in bodies:
        record = file_of(body)
        records.append(
            FileRecord(record.path, offset, record.size_bytes, record.mode, record.sha256)
        )
        offset += record.size_bytes
    return records


def endpoint_of(body: dict[str, Any]) -> EndpointRecord:
    return EndpointRecord(
        endpoint_id=body["id"],
        tenant_id="",
        name=body["name"],
        checkpoint_id=body["checkpointId"],
        gpu_ids=body["gpuIds"],
        worker_count=body["workerCount"],
        status=body["status"],
        created_at=parse_iso_time(body["createdAt"]),
    )


def summary_of(body: dict[str, Any]) -> JobSummary:
    """``GET .../jobs/{jobId}/summary`` as the store's ``JobSummary``."""
    best, latest = body["bestCheckpoint"], body["latestCheckpoint"]
    return JobSummary(
        best=record_of(best) if best else None,
        latest=record_of(latest) if latest else None,
        total_count=body["totalCount"],
        total_size_bytes=body["totalSizeBytes"],
    )


def gc_report_of(body: dict[str, Any]) -> GcReport:
    """``POST /v2/gc`` (the report's fields, camelCased) as the store's ``GcReport``."""
    # a field the server does not send (an older server) is 0
    return GcReport(**{f.name: int(body.get(_camel(f.name), 0)) for f in fields(GcReport)})


@dataclass(frozen=True)
class TenantUsage:
    """``GET /v2/stats``: the caller's checkpoints and the bytes their uploads added.

    Not ``StoreStats``: blocks, packs and unique bytes are figures of the whole
    store, which one tenant is not shown (blocks are shared across tenants)."""

    checkpoints: int
    logical_bytes: int
    stored_bytes: int

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per stored byte (1.0 when nothing is stored)."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0


def usage_of(body: dict[str, Any]) -> TenantUsage:
    return TenantUsage(body["checkpoints"], body["logicalBytes"], body["storedBytes"])


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
