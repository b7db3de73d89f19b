"""Dedup-aware upload: the client chunks and hashes, sends only missing blocks.

``missing`` leases every block the store already has until the upload
commits or its lease expires, so GC cannot remove a block a client was told
it need not send. ``put_block`` re-hashes what it receives: bytes can never
be stored under a wrong id. ``flush`` makes received blocks durable and
recorded, so an upload may span many requests (and server processes): its
only state is in the catalog, under the lease holder ``upload_id``.

For a tenant other than the embedded default (``""``), ``missing`` counts as
present only blocks that the tenant's own checkpoints reference: the answer
never reveals that another tenant stored some bytes. A block that exists but
is hidden is uploaded, verified and then simply leased, not stored twice.

A block may also arrive encoded (``put_sent``): whole by a codec of the store's,
or as a delta on a base block. The store rebuilds it from its own copy of the
base, which must be visible to the tenant by the same rule as ``missing`` (leased
to this upload or referenced by the tenant's own checkpoints; any block for the
embedded store), checks the id, then stores it as if it had come raw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from ckptstore.errors import (
    BlockHashMismatch,
    BlocksNotUploaded,
    DeltaBasesTooLarge,
    DeltaBaseUnavailable,
    FormatError,
    InvalidArgument,
    UndecodableBlock,
)
from ckptstore.store.catalog.records import BlockRecord, CheckpointRecord, FileRecord
from ckptstore.store.codecs.encoder import BlockEncoder
from ckptstore.store.codecs.ids import Codec, DecodeError
from ckptstore.store.commit import Committer
from ckptstore.store.context import StoreContext
from ckptstore.store.files import DEFAULT_MODE, check_file_name, check_layout, default_name
from ckptstore.store.ids import block_id
from ckptstore.store.ingest import LeaseKeeper
from ckptstore.store.packs.entries import load_block
from ckptstore.store.packs.writer import PackWriter

Received = tuple[bytes | memoryview, int | None, str | None]  # data, width, slot
Raw = bytes | memoryview


class Sent(Protocol):
    """A block as a client sent it encoded (blockframes.py ``SentBlock``)."""

    @property
    def block_id(self) -> bytes: ...
    @property
    def payload(self) -> Raw: ...
    @property
    def raw_len(self) -> int: ...
    @property
    def codec(self) -> int: ...
    @property
    def base_id(self) -> bytes | None: ...
    @property
    def width(self) -> int | None: ...
    @property
    def slot(self) -> str | None: ...


def _file_records(
    files: list[tuple[str, int, int]] | None, checkpoint_id: str, size_bytes: int
) -> list[FileRecord]:
    if files is None:
        return [FileRecord(default_name(checkpoint_id), 0, size_bytes, DEFAULT_MODE)]
    records: list[FileRecord] = []
    offset = 0
    for path, size, mode in files:
        records.append(FileRecord(path, offset, size, mode))
        offset += size
    return records


class Upload:
    """The upload of checkpoint ``draft``; also a context manager that aborts on error."""

    def __init__(
        self,
        ctx: StoreContext,
        upload_id: str,
        draft: CheckpointRecord,
        committer: Committer,
    ):
        self._ctx = ctx
        self.upload_id = upload_id
        self._draft = draft
        self._tenant_id = draft.tenant_id
        self._committer = committer
        self._leases = LeaseKeeper(ctx, upload_id)
        self._encoder: BlockEncoder | None = None
        self._writer: PackWriter | None = None
        self._stored_elsewhere: dict[bytes, Received] = {}  # leased at flush
        self.done = False

    def missing(self, block_ids: list[bytes]) -> list[bytes]:
        """The ids among ``block_ids`` to send, in first-seen order; leases the rest."""
        wanted = [bid for bid in dict.fromkeys(block_ids) if not self._pending(bid)]
        # a tenant's upload sees its own blocks and those it sent; an embedded store all
        visible = self._visible if self._tenant_id else self._leases.lease_existing
        present = visible(wanted)
        return [bid for bid in wanted if bid not in present]

    def put_block(
        self,
        claimed_id: bytes,
        data: bytes | memoryview,
        width: int | None = None,
        slot: str | None = None,
    ) -> None:
        """Accept one block after checking that ``data`` hashes to ``claimed_id``.

        A client that cut the stream as the store does passes each tensor block's
        element ``width`` and ``slot`` (chunking.Cut): the block is then encoded by
        its dtype, and after the commit the job's previous checkpoint is stored as
        deltas against it where that is smaller (rebase.py).
        """
        self.put_blocks([(claimed_id, data, width, slot)])

    def put_blocks(
        self, blocks: list[tuple[bytes, bytes | memoryview, int | None, str | None]]
    ) -> None:
        """``put_block`` for a batch of ``(id, data, width, slot)``: every block is
        checked before any is written, and hashing and encoding run on the store's
        pool."""
        for _, _, width, slot in blocks:
            if slot is not None and not width:
                raise InvalidArgument("width", width, "the element width (1-8) of a slot's block")
        actual = list(self._ctx.pool.map(block_id, [data for _, data, _, _ in blocks]))
        for (claimed_id, *_), got in zip(blocks, actual, strict=True):
            if got != claimed_id:
                raise BlockHashMismatch(claimed_id.hex(), got.hex())
        self._leases.expires_at()  # a slow upload keeps its leases alive
        fresh: dict[bytes, Received] = {}
        for claimed_id, data, width, slot in blocks:
            if not (
                self._pending(claimed_id)
                or claimed_id in self._stored_elsewhere
                or claimed_id in fresh
            ):
                fresh[claimed_id] = (data, width, slot)
        for bid in self._ctx.catalog.get_blocks(list(fresh)):
            # stored already (perhaps hidden from this tenant): lease it at flush
            self._stored_elsewhere[bid] = fresh.pop(bid)
        self._write(fresh)

    def put_sent(self, blocks: Sequence[Sent], max_base_bytes: int | None = None) -> None:
        """``put_blocks`` for blocks sent encoded: each is decoded (a delta on the store's
        own copy of its base) on the store's pool and checked against its id before any
        is stored. A base this upload may not use raises ``DeltaBaseUnavailable`` (the
        same whether it is absent or another tenant's); a payload that does not decode,
        ``UndecodableBlock``; bases whose raw bytes add up to more than
        ``max_base_bytes`` (all are read into memory), ``DeltaBasesTooLarge``."""
        bases = self._bases(blocks, max_base_bytes)

        def rebuild(sent: Sent) -> Raw:
            if sent.codec == Codec.RAW:
                return sent.payload
            base = None if sent.base_id is None else bases[sent.base_id]
            try:
                return self._ctx.codec.decode(sent.codec, sent.payload, sent.raw_len, base)
            except (DecodeError, FormatError, ValueError) as exc:
                raise UndecodableBlock(sent.block_id.hex(), sent.codec, str(exc)) from None

        raws = list(self._ctx.pool.map(rebuild, blocks))
        self.put_blocks(
            [(s.block_id, raw, s.width, s.slot) for s, raw in zip(blocks, raws, strict=True)]
        )

    def _bases(self, blocks: Sequence[Sent], max_bytes: int | None) -> dict[bytes, Raw]:
        """The raw bytes of the base blocks ``blocks`` name, each checked visible to the
        tenant (and leased to this upload, so GC keeps it while the upload runs)."""
        wanted = list(dict.fromkeys(s.base_id for s in blocks if s.base_id is not None))
        if not wanted:
            return {}
        visible = self._visible(wanted) if self._tenant_id else self._leases.lease_existing(wanted)
        records = self._ctx.catalog.get_blocks([bid for bid in wanted if bid in visible])
        for sent in blocks:
            if sent.base_id is not None and sent.base_id not in records:
                raise DeltaBaseUnavailable(sent.block_id.hex(), sent.base_id.hex())
        total = 0
        counted: set[bytes] = set()
        for sent in blocks:
            if max_bytes is None or sent.base_id is None or sent.base_id in counted:
                continue
            counted.add(sent.base_id)
            total += records[sent.base_id].raw_len
            if total > max_bytes:
                raise DeltaBasesTooLarge(sent.block_id.hex(), sent.base_id.hex(), max_bytes)

        def read(record: BlockRecord) -> Raw:
            cached = self._ctx.base_cache.peek(record.block_id)  # an upload just before
            if cached is not None and block_id(cached) == record.block_id:
                return cached
            return load_block(self._ctx, record)

        ordered = sorted(records.values(), key=lambda r: (r.pack_id, r.offset))
        return dict(
            zip((r.block_id for r in ordered), self._ctx.pool.map(read, ordered), strict=True)
        )

    def _write(self, blocks: dict[bytes, Received]) -> None:
        if not blocks:
            return
        if self._writer is None:
            self._writer = PackWriter(self._ctx, self.upload_id)
        if self._encoder is None:
            self._encoder = BlockEncoder(self._ctx, self.upload_id)
        encoder = self._encoder
        encoded = [
            self._ctx.pool.submit(encoder.encode, bid, memoryview(data), width, slot)
            for bid, (data, width, slot) in blocks.items()
        ]
        try:
            for (bid, (data, width, slot)), future in zip(blocks.items(), encoded, strict=True):
                codec, payload = future.result()
                tensor_width = width if slot is not None else None
                self._writer.add(bid, codec, len(data), payload, width=tensor_width)
        except BaseException:
            # The open pack is dropped (its temporary object with it), so its blocks
            # count as missing again; packs recorded before stay, leased to this upload.
            self._writer.close()
            self._writer = None
            raise

    def flush(self) -> None:
        """Make every block received so far durable and recorded (leased to this upload)."""
        if self._stored_elsewhere:
            elsewhere, self._stored_elsewhere = self._stored_elsewhere, {}
            leased = self._leases.lease_existing(list(elsewhere))
            # blocks collected by GC since put_blocks looked are written after all
            self._write({bid: got for bid, got in elsewhere.items() if bid not in leased})
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.finish()
        finally:
            writer.close()

    def commit(
        self,
        block_ids: list[bytes],
        slots: list[str | None] | None = None,
        files: list[tuple[str, int, int]] | None = None,
        *,
        tree: bool = False,
    ) -> CheckpointRecord:
        """Make the checkpoint whose bytes are the concatenation of ``block_ids``;
        ``slots``, one per block, pair its tensor blocks with the previous checkpoint's
        for the rebase (rebase.py). ``files``: ``(path, size_bytes, mode)`` of each
        file in checkpoint order (files.py), each starting at a block edge; one file
        unless ``tree``. Without it, one file of the default name. The SHA-256 of
        the files is not known at the commit: the store reads them back after it, in
        the background (``settle`` waits), and states only what it read."""
        if slots is not None and len(slots) != len(block_ids):
            raise InvalidArgument("slots", len(slots), "one slot (or null) per block id")
        if not tree and files is not None and len(files) != 1:
            raise InvalidArgument("files", len(files), "one file, unless the layout is a tree")
        self.flush()
        found = self._ctx.catalog.get_blocks(block_ids)
        if self._tenant_id:
            found = self._owned(found)
        absent = [bid.hex() for bid in dict.fromkeys(block_ids) if bid not in found]
        if absent:
            raise BlocksNotUploaded(absent)
        manifest: list[tuple[int, bytes]] = []
        offset = 0
        for bid in block_ids:
            manifest.append((offset, bid))
            offset += found[bid].raw_len
        records = _file_records(files, self._draft.checkpoint_id, offset)
        check_layout(records, offset)
        if not tree:
            check_file_name(records[0].path)
        edges = {start for start, _ in manifest} | {offset}
        for file in records:
            if file.offset not in edges:
                raise InvalidArgument("files", file.path, "files that start at block edges")
        draft = replace(self._draft, layout="tree" if tree else "file")
        committed = self._committer.commit(
            draft, manifest, offset, self.upload_id, slots, files=records
        )
        self.done = True
        return committed

    def _owned(self, found: dict[bytes, BlockRecord]) -> dict[bytes, BlockRecord]:
        """Of the blocks found, those this tenant may name: leased to this upload (sent
        by it, or reported present by ``missing``) or referenced by the tenant's own
        checkpoints. Naming any other block fails exactly like naming an absent one, so a
        commit can neither probe for nor borrow another tenant's data."""
        return {bid: found[bid] for bid in self._visible(list(found))}

    def _visible(self, block_ids: list[bytes]) -> set[bytes]:
        """Those of ``block_ids`` present for this tenant, leased to this upload: sent by
        it or reported present before, or referenced by the tenant's own checkpoints."""
        mine = self._ctx.catalog.leased_to(self.upload_id, block_ids)
        rest = [bid for bid in block_ids if bid not in mine]
        if rest:
            mine |= self._ctx.catalog.lease_visible(
                rest, self._tenant_id, self.upload_id, self._leases.expires_at()
            )
        return mine

    def abort(self) -> None:
        """Give up: leases go now; blocks already written are reclaimed by GC."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._ctx.catalog.release_leases(self.upload_id)
        self.done = True

    def _pending(self, bid: bytes) -> bool:
        return self._writer is not None and bid in self._writer

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.done:
            self.abort()
