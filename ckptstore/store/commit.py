"""Committer: makes a checkpoint visible, then runs what follows a commit.

Every ingest and upload ends here. One catalog transaction records the
checkpoint with its manifest and the rebase of the job's previous checkpoint
onto it (the rule: rebase.choose_rebase_parent).
The job's policies then run (policies.py), and the rebase is queued on one
background thread, in commit order, so a training loop waits only for its own
save and each rebase sees the chains the last one made.
"""

from __future__ import annotations

import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

from ckptstore.errors import CheckpointNotFound
from ckptstore.store.catalog.records import CheckpointRecord, FileRecord, ListQuery
from ckptstore.store.codecs.encoder import defers_whole_encode
from ckptstore.store.context import StoreContext
from ckptstore.store.counterparts import counterparts, placed
from ckptstore.store.digests import digest_checkpoint
from ckptstore.store.files import checkpoint_digest
from ckptstore.store.gc import GcLock, compact_packs
from ckptstore.store.policies import apply_policies
from ckptstore.store.rebase import (
    choose_rebase_parent,
    encode_deferred,
    rebase_parent,
    stale_raw_holders,
)

log = logging.getLogger("ckptstore.store")


class Committer:
    """Commits checkpoints and runs their parents' rebases in the background."""

    def __init__(self, ctx: StoreContext, gc_lock: GcLock) -> None:
        self._ctx = ctx
        self._gc_lock = gc_lock
        self._rebaser = ThreadPoolExecutor(1, thread_name_prefix="ckptstore-rebase")
        self._digester = ThreadPoolExecutor(1, thread_name_prefix="ckptstore-digest")
        self._digesting: set[str] = set()  # queued or running, so none is read twice
        self._digesting_lock = threading.Lock()
        # Rebases are claimed in the catalog, so that of several processes on one store
        # exactly one runs each; a claim lapses after the lease time, so the work of a
        # process that died is taken up by another (at its next GC or open).
        self._owner = f"rebaser_{secrets.token_hex(8)}"
        # Checkpoints committed here whose raw blocks (StoreConfig.defer_whole_encode)
        # no rebase has encoded yet: the newest of each job, by id.
        self._unencoded: dict[str, CheckpointRecord] = {}
        # Raw tensor blocks that no encoding stored smaller: codec 0 for good, so not
        # decoded and encoded again at every GC.
        self._left_raw: set[bytes] = set()
        self._closed = False

    def resume(self) -> None:
        """Queue the pending rebases no process holds: those a crash, an error or a
        process that died left undone, oldest first."""
        while (claimed := self._claim()) is not None:
            self._rebaser.submit(self._rebase, *claimed)

    def resume_digests(self) -> None:
        """Queue the SHA-256 of checkpoints whose files' digests are still unknown (an
        upload's, when the process that took it stopped before reading it back)."""
        for checkpoint_id in self._ctx.catalog.undigested():
            self._queue_digest(checkpoint_id)

    def _queue_digest(self, checkpoint_id: str) -> None:
        with self._digesting_lock:
            if checkpoint_id in self._digesting:
                return
            self._digesting.add(checkpoint_id)
        self._digester.submit(self._digest, checkpoint_id)

    def _claim(self, checkpoint_id: str | None = None) -> tuple[str, str] | None:
        now = self._ctx.clock()
        until = now + self._ctx.config.lease_ttl_s
        return self._ctx.catalog.claim_rebase(self._owner, until, now, checkpoint_id)

    def commit(
        self,
        draft: CheckpointRecord,
        manifest: list[tuple[int, bytes]],
        size: int,
        holder: str,
        slots: list[str | None] | None = None,
        *,
        files: list[FileRecord],
    ) -> CheckpointRecord:
        """Make ``draft`` a ready checkpoint of ``manifest`` (``(logical offset, block
        id)``; ``slots``: the tensor slot of each entry) and ``files`` (files.py),
        releasing ``holder``'s leases. Files whose SHA-256 is not known (an upload's)
        are read back and hashed in the background (``settle`` waits for that): the
        commit of an upload of known blocks stays as cheap as its block list.

        Its stored bytes are those of its blocks that no other checkpoint of its tenant
        holds, whoever else stores them: what it costs the tenant, and nothing about
        other tenants' data."""
        new = self._ctx.catalog.new_to_tenant(draft.tenant_id, [bid for _, bid in manifest])
        stored = sum(record.entry_len for record in new)
        record = replace(
            draft,
            status="ready",
            size_bytes=size,
            stored_bytes=stored,
            created_at=draft.created_at or self._ctx.clock(),
            sha256=checkpoint_digest(draft.layout, files),
        )
        parent_id = self._ctx.catalog.commit_checkpoint(
            record,
            manifest,
            holder,
            slots,
            choose_rebase_parent,
            fills_pending=draft.status == "pending",
            files=files,
        )
        if record.sha256 is None:
            self._queue_digest(record.checkpoint_id)
        apply_policies(self._ctx, record)
        self._unencoded[record.checkpoint_id] = record
        if parent_id is not None and self._claim(record.checkpoint_id) is not None:
            self._rebaser.submit(self._rebase, record.checkpoint_id, parent_id)
        return record

    def settle(self) -> None:
        """Wait until every checkpoint committed so far has had its parent rebased
        and its files' SHA-256 computed."""
        self._rebaser.submit(lambda: None).result()
        self._digester.submit(lambda: None).result()

    def encode_deferred(self, committed_before: float | None = None) -> None:
        """Encode whole the raw blocks of the checkpoints committed here that no rebase
        encoded (committed before ``committed_before``, when given), after the queued
        rebases; waits until done."""
        self._rebaser.submit(self._encode_deferred, committed_before).result()

    def _encode_deferred(self, committed_before: float | None) -> None:
        due = [
            record
            for record in list(self._unencoded.values())
            if committed_before is None or record.created_at < committed_before
        ]
        for record in due:
            self._unencoded.pop(record.checkpoint_id, None)
            try:
                for checkpoint_id in self._holders(record):
                    self._encode_raw(checkpoint_id)
            except Exception:  # noqa: BLE001 - its blocks stay raw: readable, larger
                log.exception(
                    "encoding the raw blocks of checkpoint %s failed", record.checkpoint_id
                )
        if committed_before is None or not defers_whole_encode(self._ctx):
            return
        # At GC: what other processes left raw (one died, or never closed the store).
        # It reads every block row, so only a store whose puts store blocks raw pays.
        try:
            stale = stale_raw_holders(self._ctx, committed_before, self._left_raw)
        except Exception:  # noqa: BLE001 - the next GC looks again
            log.exception("finding the raw blocks left by other processes failed")
            return
        for checkpoint_id in stale:
            try:
                self._encode_raw(checkpoint_id)
            except Exception:  # noqa: BLE001 - its blocks stay raw: readable, larger
                log.exception("encoding the raw blocks of checkpoint %s failed", checkpoint_id)

    def _holders(self, record: CheckpointRecord) -> list[str]:
        """The checkpoint, or once it is deleted its best copies, which share its
        manifest and so its raw blocks (no rebase takes a copy as its parent)."""
        try:
            self._ctx.catalog.get_checkpoint(record.checkpoint_id)
            return [record.checkpoint_id]
        except CheckpointNotFound:
            query = ListQuery(record.tenant_id, record.job_id, "createdAt", True, None, ("best",))
            copies = self._ctx.catalog.list_checkpoints(query)[0]
            return [c.checkpoint_id for c in copies if c.parent_id == record.checkpoint_id]

    def _encode_leftover(self, parent_id: str) -> set[str]:
        """Encode whole the raw blocks a rebase of ``parent_id`` left raw; the packs
        that lost entries."""
        try:
            report = encode_deferred(self._ctx, parent_id, self._left_raw)
        except CheckpointNotFound:
            return set()  # deleted since
        self._left_raw |= report.left_raw
        return report.packs_emptied

    def _encode_raw(self, checkpoint_id: str) -> None:
        """Encode whole the raw blocks of one checkpoint and compact what that emptied."""
        try:
            report = encode_deferred(self._ctx, checkpoint_id, self._left_raw)
        except CheckpointNotFound:
            return  # deleted since
        self._left_raw |= report.left_raw
        if emptied := report.packs_emptied:
            self._gc_lock.run(partial(compact_packs, self._ctx, emptied), wait=True)

    def close(self) -> None:
        """Finish the queued rebases, encode the raw blocks no rebase took, finish the
        digests."""
        if self._closed:
            return
        self._closed = True
        self.encode_deferred()
        self._rebaser.shutdown(wait=True)
        self._digester.shutdown(wait=True)

    def _digest(self, checkpoint_id: str) -> None:
        """Read the checkpoint back and record the SHA-256 of the files that lack it
        (blocks a client uploaded: the server states only digests of what it read).
        A failure is logged; the next open tries again."""
        try:
            digest_checkpoint(self._ctx, checkpoint_id)
        except CheckpointNotFound:
            pass  # deleted since
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("computing the SHA-256 of checkpoint %s failed", checkpoint_id)
        finally:
            with self._digesting_lock:
                self._digesting.discard(checkpoint_id)

    def _rebase(self, checkpoint_id: str, parent_id: str) -> None:
        """Store the parent checkpoint as deltas on ``checkpoint_id``, compact the packs
        that held its whole blocks, and forget the pending rebase. The commit stands
        whatever happens here: a failure leaves the parent whole, is logged, and is
        tried again when the store is next opened."""
        catalog = self._ctx.catalog
        try:
            parent, child = catalog.slots(parent_id), catalog.slots(checkpoint_id)
            old, new = placed(catalog, parent_id), placed(catalog, checkpoint_id)
        except CheckpointNotFound:  # deleted since; the catalog dropped the pending row
            return
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("rebasing checkpoint %s onto %s failed", parent_id, checkpoint_id)
            return
        try:
            tensor_ids = {r.block_id for slots in (parent, child) for r in slots.values()}
            opaque = counterparts(old, new, tensor_ids)
            report = rebase_parent(self._ctx, parent, child, parent_id, opaque)
            # A raw block whose re-pointing the catalog refused (a GC moved it, or its
            # delta's base changed, meanwhile) is encoded whole now: no later rebase
            # takes this checkpoint again, and left raw it would stay so.
            self._left_raw |= report.left_raw
            emptied = report.packs_emptied | self._encode_leftover(parent_id)
            if emptied:
                self._gc_lock.run(lambda: compact_packs(self._ctx, emptied), wait=False)
            catalog.finish_rebase(checkpoint_id)
            self._unencoded.pop(parent_id, None)  # its raw blocks were encoded
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("rebasing checkpoint %s onto %s failed", parent_id, checkpoint_id)
