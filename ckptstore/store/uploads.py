"""Dedup-aware upload: the client chunks and hashes, sends only missing blocks.

``missing`` leases every block the store already has until the upload
commits or its lease expires, so GC cannot remove a block a client was told
it need not send. ``put_block`` re-hashes what it receives: bytes can never
be stored under a wrong id.
"""

from __future__ import annotations

from collections.abc import Callable

from ckptstore.errors import BlockHashMismatch, BlocksNotUploaded
from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import block_id, new_upload_id
from ckptstore.store.leases import LeaseKeeper
from ckptstore.store.writer import PackWriter

CommitFn = Callable[[list[tuple[int, bytes]], int, int], CheckpointRecord]


class Upload:
    """One checkpoint's upload session; also a context manager that aborts on error."""

    def __init__(self, ctx: StoreContext, commit: CommitFn) -> None:
        self._ctx = ctx
        self._commit = commit
        self.upload_id = new_upload_id()
        self._writer = PackWriter(ctx, self.upload_id)
        self._leases = LeaseKeeper(ctx, self.upload_id)
        self.done = False

    def missing(self, block_ids: list[bytes]) -> list[bytes]:
        """The ids among ``block_ids`` the store lacks, in first-seen order; leases the rest."""
        wanted = [bid for bid in dict.fromkeys(block_ids) if bid not in self._writer]
        present = self._leases.lease_existing(wanted)
        return [bid for bid in wanted if bid not in present]

    def put_block(self, claimed_id: bytes, data: bytes | memoryview) -> None:
        """Store one block after checking that ``data`` hashes to ``claimed_id``."""
        actual = block_id(data)
        if actual != claimed_id:
            raise BlockHashMismatch(claimed_id.hex(), actual.hex())
        self._leases.expires_at()  # a slow upload keeps its leases alive
        codec, payload = self._ctx.codec.encode(memoryview(data))
        self._writer.add(claimed_id, codec, len(data), payload)

    def commit(self, block_ids: list[bytes]) -> CheckpointRecord:
        """Make the checkpoint whose bytes are the concatenation of ``block_ids``."""
        self._writer.finish()
        lengths = {bid: n for bid in block_ids if (n := self._writer.raw_len(bid)) is not None}
        others = [bid for bid in dict.fromkeys(block_ids) if bid not in lengths]
        found = self._ctx.catalog.get_blocks(others)
        absent = [bid.hex() for bid in others if bid not in found]
        if absent:
            raise BlocksNotUploaded(absent)
        lengths.update((bid, record.raw_len) for bid, record in found.items())
        manifest: list[tuple[int, bytes]] = []
        offset = 0
        for bid in block_ids:
            manifest.append((offset, bid))
            offset += lengths[bid]
        record = self._commit(manifest, offset, self._writer.stored_bytes)
        self.done = True
        self._writer.close()
        return record

    def abort(self) -> None:
        """Give up: leases go now, blocks already written are reclaimed by GC."""
        self._writer.close()
        self._ctx.catalog.release_leases(self.upload_id)
        self.done = True

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.done:
            self.abort()
