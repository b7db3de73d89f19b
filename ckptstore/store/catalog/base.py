"""The catalog: the metadata of a store, as a few small Protocols with one job each.

- ``BlockIndex``: packs and the blocks in them (where each block's entry is).
- ``Leases``: holds on blocks an ingest or upload found, so GC leaves them alone.
- ``Checkpoints``: checkpoints, their manifests and slots, jobs and their settings.
- ``Lookups``: a tenant's checkpoints by id prefix, a job's newest of some types.
- ``Files``: the files of a checkpoint (one, or a folder's) and their SHA-256 digests.
- ``Rebases``: pending rebases and re-encoding blocks as deltas (rebase.py).
- ``Maintenance``: GC, verify, stats and space given back.
- ``ServiceRecords``: store settings, endpoints and API keys.

``Catalog`` is all of them, for the store's context; each engine module names the
one or two it uses. Nothing here knows the pack byte layout: a block's record
carries the length of its entry's header.

Every checkpoint, job, endpoint and key belongs to one tenant (``""`` for an
embedded single-user store); reads never cross tenants.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from ckptstore.store.catalog.records import (
    CHECKPOINT_TYPES,
    ApiKeyRecord,
    BlockRecord,
    CatalogStats,
    CheckpointRecord,
    EndpointRecord,
    FileRecord,
    JobListing,
    ListQuery,
    PackUsage,
    adjacent_runs,
)

# Picks, from a job's other ready checkpoints (newest first), the one to rebase onto a
# checkpoint being committed, or None (rebase.choose_rebase_parent).
ParentRule = Callable[[Iterable[CheckpointRecord]], str | None]


class BlockIndex(Protocol):
    """Packs and the blocks whose entries they hold."""

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
        ...

    def get_block(self, block_id: bytes) -> BlockRecord | None: ...

    def get_blocks(self, block_ids: list[bytes]) -> dict[bytes, BlockRecord]:
        """The records of those of ``block_ids`` that are present."""
        ...

    def unreferenced(self, block_ids: list[bytes]) -> list[BlockRecord]:
        """Those of ``block_ids`` (distinct) that no checkpoint references yet."""
        ...

    def deltas_on(self, block_ids: list[bytes]) -> list[BlockRecord]:
        """The blocks stored as deltas against any of ``block_ids``."""
        ...

    def new_to_tenant(self, tenant_id: str, block_ids: list[bytes]) -> list[BlockRecord]:
        """Those of ``block_ids`` (distinct, present) that no checkpoint of ``tenant_id``
        references: what a checkpoint of theirs adds to their own storage, counted as
        if the tenant were alone in the store, so that no figure shown to a tenant
        depends on what other tenants store."""
        ...

    def blocks_in_pack(self, pack_id: str) -> list[BlockRecord]:
        """The blocks whose copy of record is in ``pack_id``, by offset."""
        ...

    def iter_blocks(self) -> Iterator[BlockRecord]:
        """Every block, ordered by pack and offset, read a page at a time (memory stays
        bounded whatever the store's size; a block moved while the pages are read may be
        seen in both places, or in neither)."""
        ...


class Leases(Protocol):
    """Holds on blocks. ``lease_existing`` finds and leases blocks in one transaction,
    so GC either removed a block before the lease (it is reported missing) or cannot
    remove it until the lease expires."""

    def lease_existing(
        self, block_ids: list[bytes], lease_holder: str, expires_at: float
    ) -> set[bytes]:
        """The subset of ``block_ids`` present, each leased to ``lease_holder``."""
        ...

    def lease_visible(
        self, block_ids: list[bytes], tenant_id: str, lease_holder: str, expires_at: float
    ) -> set[bytes]:
        """Like ``lease_existing``, but only blocks that ``tenant_id``'s own checkpoints
        reference count as present: the answer never reveals another tenant's data."""
        ...

    def leased_to(self, lease_holder: str, block_ids: list[bytes]) -> set[bytes]:
        """The subset of ``block_ids`` that ``lease_holder`` holds a lease on."""
        ...

    def renew_leases(self, lease_holder: str, expires_at: float) -> None: ...

    def release_leases(self, lease_holder: str) -> None: ...


class Checkpoints(Protocol):
    """Checkpoints, manifests, slots and jobs.

    Invariants:
    - ``commit_checkpoint`` is one transaction: the checkpoint, its manifest, the
      refcount increments and its pending rebase become visible together or not at
      all, and it fails with ``MissingBlockError`` (changing nothing) if any block
      it references is not in the catalog.
    - A checkpoint pinned by an endpoint cannot be deleted (``CheckpointPinned``).
    """

    def create_checkpoint(self, record: CheckpointRecord) -> None:
        """Record a checkpoint without data (status ``pending``); ``CheckpointExists`` if taken."""
        ...

    def commit_checkpoint(
        self,
        record: CheckpointRecord,
        manifest: list[tuple[int, bytes]],
        lease_holder: str,
        slots: list[str | None] | None = None,
        rebase_parent: ParentRule | None = None,
        *,
        fills_pending: bool = False,
        files: list[FileRecord] | None = None,
    ) -> str | None:
        """Make a checkpoint visible: manifest rows ``(logical_offset, block_id)`` in
        order (with the tensor slot of each, when given), its ``files`` rows (by
        offset), refcounts incremented, the holder's leases released; one transaction.

        ``rebase_parent``, when given, is called inside that transaction with the job's
        other ready checkpoints, newest first (ties by insertion order, newest first);
        the checkpoint it names is recorded as to be rebased onto this one and its id
        returned (else None). The engine owns the rule; the catalog only evaluates it
        where a choice made beforehand could not go stale: a crash leaves either the
        commit and its pending rebase or neither, and of two commits of one job racing,
        the second sees the first.

        A ``pending`` checkpoint of the same id and tenant is filled in; any
        other existing id raises ``CheckpointExists``. With ``fills_pending`` the
        pending checkpoint must still be there: one deleted while its data was on
        the way raises ``CheckpointNotFound`` (changing nothing), so it never comes
        back."""
        ...

    def replace_best(self, record: CheckpointRecord, old_best_id: str | None) -> None:
        """Add ``record`` (type best) sharing the manifest and files of ``record.parent_id``
        and delete ``old_best_id``, in one transaction: a best copy costs no block storage
        and writes no manifest rows (it reads its source's; when the source is deleted,
        its rows pass to the copy). Raises CheckpointNotFound if the source is gone."""
        ...

    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        """Raises CheckpointNotFound."""
        ...

    def list_checkpoints(self, query: ListQuery) -> tuple[list[CheckpointRecord], int, str | None]:
        """One page of a job's checkpoints, how many match in all (ignoring the limit
        and cursor), and the cursor of the next page (None after the last).

        Checkpoints lacking the sort key come last in either order; ties go
        newest first, and checkpoints created at the same instant by insertion order.
        A page starts right after the position its cursor names (cursors.py), so
        checkpoints added or deleted meanwhile neither repeat nor skip others.
        """
        ...

    def job_listing(self, query: ListQuery) -> JobListing:
        """``list_checkpoints``, ``job_extremes`` and ``job_totals`` of the query's
        tenant and job, as one read sees them (what a list answer shows, which dashboards
        poll, so a catalog reads it in as few statements as it can)."""
        ...

    def delete_checkpoint(self, checkpoint_id: str, now: float) -> CheckpointRecord:
        """Remove a checkpoint, drop its references and the pending rebases that name
        it, in one transaction.

        Raises CheckpointNotFound, or CheckpointPinned if an endpoint uses it."""
        ...

    def pending_since(self, created_before: float) -> list[CheckpointRecord]:
        """Every tenant's ``pending`` checkpoints created before ``created_before``."""
        ...

    def manifest(self, checkpoint_id: str) -> list[tuple[int, BlockRecord]]:
        """``(logical_offset, block)`` in order; raises CheckpointNotFound."""
        ...

    def slots(self, checkpoint_id: str) -> dict[str, BlockRecord]:
        """A checkpoint's tensor blocks by slot; raises CheckpointNotFound."""
        ...

    def job_totals(self, tenant_id: str, job_id: str) -> tuple[int, int]:
        """How many checkpoints the job has, and the sum of their sizes."""
        ...

    def job_extremes(
        self, tenant_id: str, job_id: str
    ) -> tuple[CheckpointRecord | None, CheckpointRecord | None]:
        """The job's newest checkpoint of type best, and its newest checkpoint of any type."""
        ...

    def tenant_totals(self, tenant_id: str) -> tuple[int, int, int]:
        """A tenant's checkpoint count, sum of sizes and sum of stored (added) bytes."""
        ...

    def metric_keys(self, tenant_id: str, job_id: str) -> list[str]: ...

    def list_jobs(self, tenant_id: str) -> list[str]: ...

    def job_settings(self, tenant_id: str, job_id: str) -> dict[str, object]:
        """The job's settings (empty for a job never configured or never seen)."""
        ...

    def set_job_settings(
        self, tenant_id: str, job_id: str, settings: dict[str, object], now: float
    ) -> None: ...


class Files(Protocol):
    """The files of checkpoints. A checkpoint committed since catalog schema 8 has one
    row per file, in offset order; one from before has none (it reads as one file)."""

    def files(self, checkpoint_id: str) -> list[FileRecord]:
        """The checkpoint's files by offset (empty before schema 8); raises
        CheckpointNotFound."""
        ...

    def record_digests(self, checkpoint_id: str, digests: dict[str, str], sha256: str) -> None:
        """Set the SHA-256 of files (by path) and of the checkpoint where still unknown,
        and the same in its best copies (which share its bytes)."""
        ...

    def undigested(self) -> list[str]:
        """Ready checkpoints with a file whose SHA-256 is not known yet, oldest first."""
        ...


class Lookups(Protocol):
    """What resolving a checkpoint reference needs (``refs.py``): answered by index,
    from the tenant's own rows only."""

    def ids_with_prefix(self, tenant_id: str, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of ``tenant_id``'s checkpoints that start with ``prefix``
        (an id equal to it included), in id order. Another tenant's checkpoints are
        never looked at, so neither the answer nor its cost depends on them."""
        ...

    def newest_ready(
        self, tenant_id: str, job_id: str, types: tuple[str, ...]
    ) -> CheckpointRecord | None:
        """The job's newest ready checkpoint of one of ``types`` (of two created at the
        same instant, the one inserted last), or None."""
        ...


class Rebases(Protocol):
    """Pending rebases, and blocks re-encoded as deltas (or whole again)."""

    def pending_rebases(self) -> list[tuple[str, str]]:
        """``(checkpoint_id, parent_id)`` of every rebase not yet finished, in commit order."""
        ...

    def finish_rebase(self, checkpoint_id: str) -> None:
        """Forget the pending rebase onto ``checkpoint_id``."""
        ...

    def claim_rebase(
        self, owner: str, until: float, now: float, checkpoint_id: str | None = None
    ) -> tuple[str, str] | None:
        """Claim for ``owner`` until ``until`` the oldest pending rebase (or the one onto
        ``checkpoint_id``) that no one holds: unclaimed, or its claim lapsed (before
        ``now``); ``(checkpoint_id, parent_id)``, or None. Of processes claiming at
        once, exactly one gets each rebase; a holder's own claim is not taken again
        before it lapses."""
        ...

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
        A block's width is its own and does not change.
        When none is re-pointed the pack is not recorded (its bytes may be deleted)."""
        ...

    def orphaned_deltas(self, dead_before: float) -> list[BlockRecord]:
        """Blocks still in use (referenced or leased) stored as deltas on a block that
        is dead but for them: refcount 0 since before ``dead_before``, no lease."""
        ...


class Maintenance(Protocol):
    """GC, verify and stats.

    A block is *dead* when its refcount is 0, no unexpired lease holds it, no
    other block names it as ``base_id``, and it reached refcount 0 at least a
    grace period ago. Only dead blocks are ever removed.
    """

    def remove_dead_blocks(self, now: float, grace_s: float) -> list[BlockRecord]:
        """Delete the rows of every dead block (and expired leases); return them."""
        ...

    def pack_usage(self, pack_ids: Collection[str] | None = None) -> list[PackUsage]:
        """Each pack's size and live bytes, by pack id; only ``pack_ids`` when given."""
        ...

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
        ...

    def relocate_packs(
        self, moves: dict[str, list[BlockRecord]], new_pack_id: str, new_size: int, now: float
    ) -> None:
        """Record ``new_pack_id`` and point the blocks of each old pack in ``moves`` at their
        new entries (``moves[old_pack_id]``: the blocks as they are in the new pack), then
        forget the old packs; one transaction. A block no longer in its old pack (a
        rebase re-pointed it meanwhile) keeps where it is; its copy is dead bytes."""
        ...

    def remove_pack(self, pack_id: str) -> bool:
        """Forget a pack if no block points at it; whether it was forgotten (only then may
        its bytes be deleted)."""
        ...

    def missing_manifest_blocks(self) -> list[tuple[str, bytes]]:
        """``(checkpoint_id, block_id)`` for manifest entries whose block row is gone."""
        ...

    def manifest_gaps(self) -> list[tuple[str, bytes, int, int]]:
        """``(checkpoint_id, block_id, logical offset, bytes the manifest gives it)`` for
        entries of ready checkpoints whose block has another length: the next entry's
        offset (or the checkpoint's size, for the last) minus its own must be the
        block's raw length."""
        ...

    def checkpoints_using(self, block_ids: list[bytes]) -> dict[bytes, list[str]]:
        """For each block, the checkpoints whose manifests name it (directly or as a base)."""
        ...

    def stats(self) -> CatalogStats: ...

    def unknown_widths(self, after: bytes, limit: int) -> list[BlockRecord]:
        """Up to ``limit`` blocks whose width is ``UNKNOWN_WIDTH`` (rows written before
        catalog schema 4), by block id, each id greater than ``after``."""
        ...

    def record_widths(self, widths: dict[bytes, int | None]) -> None:
        """Set the width of blocks whose width is still ``UNKNOWN_WIDTH``."""
        ...

    def maintenance(self) -> None:
        """Give space freed by deletes back to the file system where the database allows."""
        ...


class ServiceRecords(Protocol):
    """Store-wide settings, endpoints that pin checkpoints, and API keys."""

    def get_setting(self, key: str) -> str | None: ...

    def set_setting_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless a value exists; return the stored value."""
        ...

    def add_endpoint(self, record: EndpointRecord) -> None:
        """Pin a ready checkpoint of the same tenant; CheckpointNotFound otherwise.
        ``EndpointNameTaken`` if the tenant has an endpoint of that name."""
        ...

    def update_endpoint(self, record: EndpointRecord) -> None:
        """Change the endpoint ``record.endpoint_id`` of ``record.tenant_id`` to ``record``
        (name, checkpoint, GPUs, workers), in one transaction: it pins the new checkpoint,
        which must be a ready one of the same tenant (else ``CheckpointNotFound``,
        ``CheckpointNotReady``), and lets go of the old. ``EndpointNotFound`` if the
        tenant has no such endpoint, ``EndpointNameTaken`` if another has the name."""
        ...

    def get_endpoint(self, endpoint_id: str) -> EndpointRecord | None: ...

    def list_endpoints(self, tenant_id: str) -> list[EndpointRecord]: ...

    def delete_endpoint(self, endpoint_id: str) -> bool: ...

    def add_api_key(self, record: ApiKeyRecord, key_hash: bytes) -> None: ...

    def active_key(self, key_hash: bytes) -> ApiKeyRecord | None:
        """The unrevoked key with this hash, or None."""
        ...

    def list_api_keys(self) -> list[ApiKeyRecord]: ...

    def revoke_api_key(self, key_id: str, now: float) -> bool: ...


@runtime_checkable
class ExclusiveLock(Protocol):
    """A lock that a catalog shared by several machines gives the processes sharing it,
    so that one GC or compaction runs at a time among them all. A catalog in a local
    file has none: the store locks a file beside it."""

    def exclusive(self, *, wait: bool) -> AbstractContextManager[bool]:
        """Hold the lock for the ``with`` block; yields whether it was taken (always
        when ``wait``: then it waits for the holder to let go)."""
        ...


class Catalog(
    BlockIndex,
    Leases,
    Checkpoints,
    Lookups,
    Files,
    Rebases,
    Maintenance,
    ServiceRecords,
    Protocol,
):
    """The whole catalog, one implementation per database."""

    def close(self) -> None: ...


__all__ = [
    "CHECKPOINT_TYPES",
    "ApiKeyRecord",
    "BlockIndex",
    "BlockRecord",
    "Catalog",
    "CatalogStats",
    "CheckpointRecord",
    "Checkpoints",
    "EndpointRecord",
    "ExclusiveLock",
    "FileRecord",
    "Files",
    "Leases",
    "JobListing",
    "ListQuery",
    "Lookups",
    "Maintenance",
    "PackUsage",
    "ParentRule",
    "Rebases",
    "ServiceRecords",
    "adjacent_runs",
]
