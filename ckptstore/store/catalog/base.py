"""Catalog: the metadata of a store (checkpoints, manifests, blocks, packs, leases).

Invariants every implementation MUST keep:
- ``commit_checkpoint`` is one transaction: the checkpoint, its manifest and
  the refcount increments become visible together or not at all, and it
  fails with ``MissingBlockError`` (changing nothing) if any block it
  references is not in the catalog.
- A block is *dead* when its refcount is 0, no unexpired lease holds it, no
  other block names it as ``base_id``, and it reached refcount 0 at least a
  grace period ago. Only dead blocks are ever removed.
- ``lease_existing`` finds and leases blocks in one transaction, so GC
  either removed a block before the lease (it is reported missing) or
  cannot remove it until the lease expires.
- Every checkpoint, job, endpoint and key belongs to one tenant (``""`` for
  an embedded single-user store); reads never cross tenants.
- A checkpoint pinned by an endpoint cannot be deleted (``CheckpointPinned``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from ckptstore.store.packs.format import ENTRY, HEADER

CHECKPOINT_TYPES = ("automatic", "best", "manual", "final")


@dataclass(frozen=True, slots=True)
class BlockRecord:
    block_id: bytes
    pack_id: str
    offset: int  # of the entry header in the pack
    stored_len: int  # payload bytes
    raw_len: int
    codec: int
    base_id: bytes | None = None

    @property
    def entry_end(self) -> int:
        """Where its pack entry (header and payload) ends in the pack."""
        return self.offset + ENTRY.size + self.stored_len


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


@dataclass(frozen=True)
class PackUsage:
    pack_id: str
    size: int
    live_bytes: int  # pack header excluded; entry headers included
    created_at: float

    def reclaimable(self, dead_fraction: float, dying: int = 0) -> bool:
        """Whether GC deletes or compacts this pack (nothing live, or more than
        ``dead_fraction`` of it dead) once ``dying`` more of its live bytes die."""
        live = self.live_bytes - dying
        return live <= 0 or self.size - HEADER.size - live > dead_fraction * self.size


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


class Catalog(ABC):
    """The metadata store; one implementation per database."""

    # -- store-wide settings -------------------------------------------------
    @abstractmethod
    def get_setting(self, key: str) -> str | None: ...

    @abstractmethod
    def set_setting_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless a value exists; return the stored value."""

    # -- write path ----------------------------------------------------------
    @abstractmethod
    def add_pack(
        self,
        pack_id: str,
        size: int,
        blocks: list[BlockRecord],
        now: float,
        lease_holder: str,
        lease_expires_at: float,
    ) -> int:
        """Record a durable pack and its blocks, leased to ``lease_holder``.

        Blocks already present elsewhere keep their old location (the copy in
        this pack is garbage for GC). Returns how many blocks were new.
        """

    @abstractmethod
    def lease_existing(
        self, block_ids: list[bytes], lease_holder: str, expires_at: float
    ) -> set[bytes]:
        """The subset of ``block_ids`` present, each leased to ``lease_holder``."""

    @abstractmethod
    def leased_to(self, lease_holder: str, block_ids: list[bytes]) -> set[bytes]:
        """The subset of ``block_ids`` that ``lease_holder`` holds a lease on."""

    @abstractmethod
    def renew_leases(self, lease_holder: str, expires_at: float) -> None: ...

    @abstractmethod
    def release_leases(self, lease_holder: str) -> None: ...

    @abstractmethod
    def commit_checkpoint(
        self,
        record: CheckpointRecord,
        manifest: list[tuple[int, bytes]],
        lease_holder: str,
        slots: list[str | None] | None = None,
    ) -> str | None:
        """Make a checkpoint visible: manifest rows ``(logical_offset, block_id)`` in
        order (with the tensor slot of each, when given), refcounts incremented, the
        holder's leases released; one transaction.

        When some slot is given and the job has another ready checkpoint that is not
        a best copy, the newest of those is recorded as to be rebased onto this one
        (in the same transaction) and its id returned; else None.

        A ``pending`` checkpoint of the same id and tenant is filled in; any
        other existing id raises ``CheckpointExists``."""

    @abstractmethod
    def create_checkpoint(self, record: CheckpointRecord) -> None:
        """Record a checkpoint without data (status ``pending``); ``CheckpointExists`` if taken."""

    @abstractmethod
    def replace_best(self, record: CheckpointRecord, old_best_id: str | None) -> None:
        """Add ``record`` (type best) sharing the manifest of ``record.parent_id`` and delete
        ``old_best_id``, in one transaction: a best copy costs no block storage."""

    # -- read path -----------------------------------------------------------
    @abstractmethod
    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        """Raises CheckpointNotFound."""

    @abstractmethod
    def list_checkpoints(self, query: ListQuery) -> tuple[list[CheckpointRecord], int]:
        """One page of a job's checkpoints, and how many match in all (ignoring the limit).

        Checkpoints lacking the sort key come last in either order; ties go
        newest first, and checkpoints created at the same instant by insertion order.
        """

    @abstractmethod
    def job_totals(self, tenant_id: str, job_id: str) -> tuple[int, int]:
        """How many checkpoints the job has, and the sum of their sizes."""

    @abstractmethod
    def job_extremes(
        self, tenant_id: str, job_id: str
    ) -> tuple[CheckpointRecord | None, CheckpointRecord | None]:
        """The job's newest checkpoint of type best, and its newest checkpoint of any type."""

    @abstractmethod
    def tenant_totals(self, tenant_id: str) -> tuple[int, int, int]:
        """A tenant's checkpoint count, sum of sizes and sum of stored (added) bytes."""

    @abstractmethod
    def metric_keys(self, tenant_id: str, job_id: str) -> list[str]: ...

    @abstractmethod
    def list_jobs(self, tenant_id: str) -> list[str]: ...

    @abstractmethod
    def job_settings(self, tenant_id: str, job_id: str) -> dict[str, object]:
        """The job's settings (empty for a job never configured or never seen)."""

    @abstractmethod
    def set_job_settings(
        self, tenant_id: str, job_id: str, settings: dict[str, object], now: float
    ) -> None: ...

    @abstractmethod
    def lease_visible(
        self, block_ids: list[bytes], tenant_id: str, lease_holder: str, expires_at: float
    ) -> set[bytes]:
        """Like ``lease_existing``, but only blocks that ``tenant_id``'s own checkpoints
        reference count as present: the answer never reveals another tenant's data."""

    @abstractmethod
    def manifest(self, checkpoint_id: str) -> list[tuple[int, BlockRecord]]:
        """``(logical_offset, block)`` in order; raises CheckpointNotFound."""

    @abstractmethod
    def slots(self, checkpoint_id: str) -> dict[str, BlockRecord]:
        """A checkpoint's tensor blocks by slot; raises CheckpointNotFound."""

    @abstractmethod
    def pending_rebases(self) -> list[tuple[str, str]]:
        """``(checkpoint_id, parent_id)`` of every rebase not yet finished, in commit order."""

    @abstractmethod
    def finish_rebase(self, checkpoint_id: str) -> None:
        """Forget the pending rebase onto ``checkpoint_id``."""

    @abstractmethod
    def get_block(self, block_id: bytes) -> BlockRecord | None: ...

    @abstractmethod
    def get_blocks(self, block_ids: list[bytes]) -> dict[bytes, BlockRecord]:
        """The records of those of ``block_ids`` that are present."""

    @abstractmethod
    def unreferenced(self, block_ids: list[bytes]) -> list[BlockRecord]:
        """Those of ``block_ids`` (distinct) that no checkpoint references yet."""

    @abstractmethod
    def blocks_in_pack(self, pack_id: str) -> list[BlockRecord]:
        """The blocks whose copy of record is in ``pack_id``, by offset."""

    # -- delete and GC -------------------------------------------------------
    @abstractmethod
    def delete_checkpoint(self, checkpoint_id: str, now: float) -> CheckpointRecord:
        """Remove a checkpoint, drop its references and the pending rebases that name
        it, in one transaction.

        Raises CheckpointNotFound, or CheckpointPinned if an endpoint uses it."""

    @abstractmethod
    def remove_dead_blocks(self, now: float, grace_s: float) -> list[BlockRecord]:
        """Delete the rows of every dead block (see the class invariants); return them."""

    @abstractmethod
    def pack_usage(self, pack_ids: Collection[str] | None = None) -> list[PackUsage]:
        """Each pack's size and live bytes, by pack id; only ``pack_ids`` when given."""

    @abstractmethod
    def relocate_blocks(
        self,
        old_pack_id: str,
        new_pack_id: str,
        new_size: int,
        moved: list[BlockRecord],
        now: float,
    ) -> None:
        """Point ``moved`` blocks (still in ``old_pack_id``) at ``new_pack_id`` and forget
        the old pack; one transaction."""

    @abstractmethod
    def remove_pack(self, pack_id: str) -> bool:
        """Forget a pack if no block points at it; whether it was forgotten (only then may
        its bytes be deleted)."""

    # -- reverse deltas ------------------------------------------------------
    @abstractmethod
    def deltas_on(self, block_ids: list[bytes]) -> list[BlockRecord]:
        """The blocks stored as deltas against any of ``block_ids``."""

    @abstractmethod
    def reencode_blocks(
        self,
        pack_id: str,
        size: int,
        moves: list[tuple[BlockRecord, BlockRecord]],
        now: float,
        owner: str | None = None,
        max_height: int | None = None,
    ) -> set[bytes]:
        """Record a pack of re-encoded blocks and point each ``(old, new)`` block at its new
        entry, in one transaction; return the ids re-pointed. The stored bytes saved
        are taken off the ``stored_bytes`` of checkpoint ``owner`` (not below 0).

        A block is re-pointed only if it is still stored as ``old`` says (location and
        base) and its new base, if any, is a whole block: re-encoding never races a GC
        move, and a delta is only ever made against a block that has no base, so no
        chain can loop. With ``max_height``, a block becomes a delta only while fewer
        than that many deltas hang below it, counted in the same transaction, so
        rebases racing in several processes cannot make a chain longer than the bound.
        When none is re-pointed the pack is not recorded (its bytes may be deleted)."""

    @abstractmethod
    def orphaned_deltas(self, dead_before: float) -> list[BlockRecord]:
        """Blocks still in use (referenced or leased) stored as deltas on a block that
        is dead but for them: refcount 0 since before ``dead_before``, no lease."""

    # -- verify and stats ----------------------------------------------------
    @abstractmethod
    def iter_blocks(self) -> Iterator[BlockRecord]:
        """Every block, ordered by pack and offset."""

    @abstractmethod
    def missing_manifest_blocks(self) -> list[tuple[str, bytes]]:
        """``(checkpoint_id, block_id)`` for manifest entries whose block row is gone."""

    @abstractmethod
    def manifest_gaps(self) -> list[tuple[str, bytes, int, int]]:
        """``(checkpoint_id, block_id, logical offset, bytes the manifest gives it)`` for
        entries of ready checkpoints whose block has another length: the next entry's
        offset (or the checkpoint's size, for the last) minus its own must be the
        block's raw length."""

    @abstractmethod
    def checkpoints_using(self, block_ids: list[bytes]) -> dict[bytes, list[str]]:
        """For each block, the checkpoints whose manifests name it (directly or as a base)."""

    @abstractmethod
    def stats(self) -> CatalogStats: ...

    # -- service records: endpoints and API keys --------------------------------
    @abstractmethod
    def add_endpoint(self, record: EndpointRecord) -> None:
        """Pin a ready checkpoint of the same tenant; CheckpointNotFound otherwise."""

    @abstractmethod
    def get_endpoint(self, endpoint_id: str) -> EndpointRecord | None: ...

    @abstractmethod
    def list_endpoints(self, tenant_id: str) -> list[EndpointRecord]: ...

    @abstractmethod
    def delete_endpoint(self, endpoint_id: str) -> bool: ...

    @abstractmethod
    def add_api_key(self, record: ApiKeyRecord, key_hash: bytes) -> None: ...

    @abstractmethod
    def tenant_for_key(self, key_hash: bytes) -> str | None:
        """The tenant of an unrevoked key, or None."""

    @abstractmethod
    def list_api_keys(self) -> list[ApiKeyRecord]: ...

    @abstractmethod
    def revoke_api_key(self, key_id: str, now: float) -> bool: ...

    @abstractmethod
    def maintenance(self) -> None:
        """Give space freed by deletes back to the file system where the database allows."""

    @abstractmethod
    def close(self) -> None: ...
