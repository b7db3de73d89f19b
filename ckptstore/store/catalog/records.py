"""The records a catalog stores and returns: blocks, checkpoints, endpoints, keys, packs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

CHECKPOINT_TYPES = ("automatic", "best", "manual", "final")

# The width of a block row written before catalog schema 4, until the engine has read it
# from the block's payload (rebase.record_legacy_widths); a new row never holds it.
UNKNOWN_WIDTH = -1


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """Where a block's pack entry is and how it is stored: all the engine needs to read
    it, judge a pack's dead bytes or re-encode it, without looking into the pack."""

    block_id: bytes
    pack_id: str
    offset: int  # of the entry (header, then payload) in the pack
    stored_len: int  # payload bytes
    raw_len: int
    codec: int
    base_id: bytes | None = None
    header_len: int = field(kw_only=True)  # bytes of the entry before its payload
    # the element width of a tensor block (the slot's dtype); None for opaque bytes
    width: int | None = field(default=None, kw_only=True)

    @property
    def entry_len(self) -> int:
        """Bytes of its pack entry: header and payload."""
        return self.header_len + self.stored_len

    @property
    def entry_end(self) -> int:
        """Where its pack entry ends in the pack."""
        return self.offset + self.entry_len


def adjacent_runs(records: list[BlockRecord]) -> Iterator[list[BlockRecord]]:
    """The records, in order, in runs whose pack entries follow one another in one pack
    (each run is read with one pack read)."""
    run: list[BlockRecord] = []
    for record in records:
        if run and (record.pack_id != run[-1].pack_id or run[-1].entry_end != record.offset):
            yield run
            run = []
        run.append(record)
    if run:
        yield run


@dataclass(frozen=True)
class CheckpointRecord:
    checkpoint_id: str
    job_id: str
    type: str
    name: str
    description: str | None
    epoch: int | None
    step: int | None
    metrics: dict[str, float]
    status: str
    size_bytes: int
    stored_bytes: int
    created_at: float
    parent_id: str | None = None  # for a best copy: the checkpoint it copies
    tenant_id: str = ""
    # SHA-256 (hex) of the bytes for a single file; of a tree, of its listing
    # (files.tree_digest); None while not known (an upload being checked, or a
    # checkpoint from before catalog schema 8)
    sha256: str | None = None
    layout: str = "file"  # "file": one file; "tree": a folder of files (files.py)


@dataclass(frozen=True)
class FileRecord:
    """One file of a checkpoint: its bytes are the checkpoint's ``[offset, offset +
    size_bytes)``, and no block spans two files."""

    path: str  # relative, POSIX separators (files.check_path)
    offset: int
    size_bytes: int
    mode: int  # permission bits (0o644)
    sha256: str | None = None  # hex; None while not known


@dataclass(frozen=True)
class EndpointRecord:
    endpoint_id: str
    tenant_id: str
    name: str
    checkpoint_id: str
    gpu_ids: list[str]
    worker_count: int
    status: str
    created_at: float


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str  # public part, shown in listings
    tenant_id: str
    name: str
    created_at: float
    revoked_at: float | None
    admin: bool = False  # an operator's key: store-wide operations (GC, metrics) too


@dataclass(frozen=True)
class PackUsage:
    pack_id: str
    size: int
    live_bytes: int  # of its live blocks' entries (headers and payloads)
    created_at: float


@dataclass(frozen=True)
class CatalogStats:
    checkpoints: int
    logical_bytes: int  # sum of checkpoint sizes
    blocks: int
    unique_raw_bytes: int
    stored_bytes: int  # sum of pack sizes
    packs: int
    pending_rebases: int = 0  # committed checkpoints whose parent is still to be rebased
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ListQuery:
    tenant_id: str
    job_id: str
    sort_by: str  # "createdAt", "epoch", "step" or a metric key
    descending: bool
    limit: int | None
    types: tuple[str, ...] | None = None  # only these checkpoint types; None for all
    cursor: str | None = None  # start after the page this cursor ended (cursors.py)


@dataclass(frozen=True)
class JobListing:
    """What a list answer shows of a job, read at once: a page of its checkpoints
    (``Checkpoints.list_checkpoints``), its best and latest (``job_extremes``) and its
    totals (``job_totals``)."""

    checkpoints: list[CheckpointRecord]
    matching: int  # checkpoints of the query's types (all when it names none)
    next_cursor: str | None
    best: CheckpointRecord | None
    latest: CheckpointRecord | None
    job_count: int
    job_size_bytes: int
