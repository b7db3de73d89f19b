"""Block fetch: a checkpoint's blocks sent as the store keeps them, for a client that
decodes them itself (``fetchframes.py`` holds the frame layout).

A client asks for a checkpoint's block list (``listing``) and then for batches of its
blocks (``BlockFetch``). A block stored whole goes as its stored payload, read from
its pack without decoding, except a tensor block its put stored raw (rebase.py), which
is encoded for the answer as its rebase would encode it whole. A block stored as a
delta goes as its chain, bases first, each base once per answer (``docs/design.md``,
"Pulls"). A client that holds an earlier checkpoint of the job names, with each block
it wants, the block of that checkpoint at the same place (the listing pairs them); the
block then goes as whichever is smallest of its stored frame, its chain, or a delta on
that base encoded for this answer.

Every block id a request names, wanted or base, must be one the tenant's own
checkpoints reference, as uploads require (``uploads.py``); a base of a stored chain
that is not goes whole instead: its frame would tell the tenant another's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ckptstore.errors import CorruptBlockError, MissingBlockError, PackNotFound, UnknownBlocks
from ckptstore.store.catalog.records import (
    BlockRecord,
    CheckpointRecord,
    FileRecord,
    adjacent_runs,
)
from ckptstore.store.codecs.estimate import whole_estimate
from ckptstore.store.context import StoreContext
from ckptstore.store.counterparts import Placed, counterparts
from ckptstore.store.fetchframes import HEAD, frame_head
from ckptstore.store.files import files_of
from ckptstore.store.ids import content_digest
from ckptstore.store.packs.entries import MAX_CHAIN, decode_entry, load_block
from ckptstore.store.packs.format import parse_entry
from ckptstore.store.rebase import DEFERRED_DELTA_MARGIN, deferred

MAX_FETCH_BLOCKS = 4096  # blocks one request may ask for
NO_BASE = -1
# A stored chain is sent while it costs at most this much more than the block is
# estimated to take encoded whole (its chain's whole block); past that the block is
# decoded and encoded whole for the answer (docs/design.md, "Pulls").
CHAIN_SLACK = 0.05
HEAD_BYTES = HEAD.size
# Entries of wanted blocks that follow one another in a pack are read together, in
# pieces of at most this many bytes, one piece held at a time: a request's memory does
# not grow with the number of blocks it names.
READ_AHEAD_BYTES = 8 << 20


@dataclass(frozen=True)
class Listing:
    """A checkpoint's blocks in order, its files, and for each block the index in the
    held checkpoint's list of the block to send it as a delta on (NO_BASE: none)."""

    record: CheckpointRecord
    files: list[FileRecord]
    block_ids: list[bytes]
    raw_lens: list[int]
    held_id: str | None
    held_bases: list[int] | None

    @property
    def digest(self) -> str:
        return content_digest(self.block_ids)


def listing(ctx: StoreContext, record: CheckpointRecord, held: CheckpointRecord | None) -> Listing:
    """The block list of ``record`` (ready), paired with ``held`` (another checkpoint
    the caller may read) when given."""
    manifest = ctx.catalog.manifest(record.checkpoint_id)
    files = files_of(record, ctx.catalog.files(record.checkpoint_id))
    ids = [block.block_id for _, block in manifest]
    raw_lens = [block.raw_len for _, block in manifest]
    bases = None
    if held is not None:
        placed = Placed(manifest, files, record.layout == "file")
        bases = _held_bases(ctx, record.checkpoint_id, placed, held)
    held_id = None if held is None else held.checkpoint_id
    return Listing(record, files, ids, raw_lens, held_id, bases)


def _held_bases(
    ctx: StoreContext, wanted_id: str, wanted: Placed, held: CheckpointRecord
) -> list[int]:
    """For each block of ``wanted``: the index in ``held``'s block list of the same
    block, else of the block at its slot (tensors) or at its place in the same file
    (other bytes, ``counterparts``), else NO_BASE."""
    held_manifest = ctx.catalog.manifest(held.checkpoint_id)
    first: dict[bytes, int] = {}
    for index, (_, block) in enumerate(held_manifest):
        first.setdefault(block.block_id, index)
    held_slots = ctx.catalog.slots(held.checkpoint_id)
    pair: dict[bytes, bytes] = {}
    tensor_ids = {block.block_id for block in held_slots.values()}
    for slot, block in ctx.catalog.slots(wanted_id).items():
        tensor_ids.add(block.block_id)
        if (base := held_slots.get(slot)) is not None:
            pair.setdefault(block.block_id, base.block_id)
    held_files = files_of(held, ctx.catalog.files(held.checkpoint_id))
    held_placed = Placed(held_manifest, held_files, held.layout == "file")
    for old, new in counterparts(wanted, held_placed, tensor_ids, any_storage=True):
        pair.setdefault(old.block_id, new.block_id)
    bases: list[int] = []
    for _, block in wanted.manifest:
        index = first.get(block.block_id, first.get(pair.get(block.block_id, b""), NO_BASE))
        bases.append(index)
    return bases


def visible_blocks(
    ctx: StoreContext, tenant: str, block_ids: list[bytes]
) -> dict[bytes, BlockRecord]:
    """The records of those of ``block_ids`` that ``tenant``'s own checkpoints reference
    (an embedded store's default tenant ``""``: every stored block)."""
    found = ctx.catalog.get_blocks(list(dict.fromkeys(block_ids)))
    if tenant and found:
        for hidden in ctx.catalog.new_to_tenant(tenant, list(found)):
            found.pop(hidden.block_id, None)
    return found


class BlockFetch:
    """One request's blocks: ``wanted`` is ``(block id, base id or None)`` in the order
    to send, each base one the client holds. Raises UnknownBlocks, before anything is
    sent, if any id named is not visible to ``tenant``."""

    def __init__(
        self, ctx: StoreContext, tenant: str, wanted: list[tuple[bytes, bytes | None]]
    ) -> None:
        self._ctx = ctx
        self._tenant = tenant
        named = [bid for pair in wanted for bid in pair if bid is not None]
        self._records = visible_blocks(ctx, tenant, named)
        unknown = [bid.hex() for bid in dict.fromkeys(named) if bid not in self._records]
        if unknown:
            raise UnknownBlocks(unknown)
        self._wanted = list(dict.fromkeys(wanted))
        self._held = {base for _, base in wanted if base is not None}
        self._sent: set[bytes] = set()
        self._read: dict[bytes, memoryview] = {}  # entries read ahead, by block id
        self._pieces: list[list[BlockRecord]] = []  # runs to read ahead, [] once read
        self._piece_of: dict[bytes, int] = {}  # block id -> its piece
        self.sent_bytes = 0  # frame bytes produced so far

    def frames(self) -> Iterator[bytes]:
        """The frames, each a bytes object (a header and a payload)."""
        self._read_runs()
        for bid, base in self._wanted:
            if bid in self._sent:
                continue
            for frame in self._frames_of(self._records[bid], base):
                self.sent_bytes += len(frame)
                yield frame

    def _frames_of(self, record: BlockRecord, base: bytes | None) -> Iterator[bytes]:
        if record.base_id is not None and self._has(record.base_id):
            yield self._stored(record)  # a delta on a block the client has: as stored
            return
        chain = self._chain(record)
        cost = record.raw_len if chain is None else sum(r.stored_len for r in chain)
        if base is not None and base != record.block_id:
            fresh = self._fresh_delta(record, self._records[base], cost)
            if fresh is not None and deferred(record):
                fresh = self._smaller_than_whole(record, fresh)
            if fresh is not None:
                self._sent.add(record.block_id)
                yield fresh
                return
        if chain is not None and cost <= (1 + CHAIN_SLACK) * self._whole_estimate(chain):
            yield from self._chain_frames(chain)
            return
        whole = self._whole(record)
        if chain is not None and len(whole) > cost + len(chain) * HEAD_BYTES:
            yield from self._chain_frames(chain)  # encoded whole it came out larger
            return
        self._sent.add(record.block_id)
        yield whole

    def _has(self, block_id: bytes) -> bool:
        """Whether the client has the block: held, or sent earlier in this answer."""
        return block_id in self._held or block_id in self._sent

    def _chain_frames(self, chain: list[BlockRecord]) -> Iterator[bytes]:
        for link in reversed(chain):
            if link.block_id not in self._sent:
                yield self._stored(link)

    def _whole_estimate(self, chain: list[BlockRecord]) -> int:
        """What the chain's block may take encoded whole: as much as the whole block its
        chain ends on (the same tensor, or the same place of a file, a save apart)."""
        bottom = chain[-1]
        if bottom.base_id is not None:
            below = self._records.get(bottom.base_id)
            bottom = below if below is not None and below.base_id is None else chain[0]
        return bottom.stored_len if bottom.base_id is None else bottom.raw_len

    def _chain(self, record: BlockRecord) -> list[BlockRecord] | None:
        """``record`` and the bases below it, down to a whole block or one the client
        has; None if one is not the tenant's to see (or the catalog lost one)."""
        chain = [record]
        while (base_id := chain[-1].base_id) is not None and not self._has(base_id):
            if len(chain) > MAX_CHAIN:
                return None
            base = self._records.get(base_id) or self._visible(base_id)
            if base is None:
                return None
            chain.append(base)
        return chain

    def _visible(self, block_id: bytes) -> BlockRecord | None:
        found = visible_blocks(self._ctx, self._tenant, [block_id]).get(block_id)
        if found is not None:
            self._records[block_id] = found
        return found

    def _stored(self, record: BlockRecord) -> bytes:
        """The block's frame: its pack entry's payload, not decoded."""
        record, entry = self._entry(record)
        try:
            parsed, payload = parse_entry(entry)
        except ValueError as exc:
            raise CorruptBlockError(record.block_id.hex(), record.pack_id, str(exc)) from None
        if parsed.block_id != record.block_id:
            raise CorruptBlockError(record.block_id.hex(), record.pack_id, "entry names another")
        self._sent.add(record.block_id)
        if parsed.base_id is not None and not self._has(parsed.base_id):
            return self._whole(record)  # re-encoded on another base since it was looked up
        if deferred(record):
            return self._whole(record)  # stored raw until its rebase: encoded for the answer
        head = frame_head(
            record.block_id, parsed.codec, parsed.raw_len, len(payload), parsed.base_id
        )
        return head + payload

    def _whole(self, record: BlockRecord) -> bytes:
        """The block's frame decoded and encoded whole again."""
        raw = memoryview(load_block(self._ctx, record))
        codec, payload = self._ctx.codec.encode(raw, record.width, aligned=record.width is not None)
        return frame_head(record.block_id, codec, len(raw), len(payload)) + bytes(payload)

    def _smaller_than_whole(self, record: BlockRecord, fresh: bytes) -> bytes:
        """For a block stored raw, whose stored size says nothing of its encoded one:
        the fresh delta where it is clearly below an estimate of the whole payload (as
        the rebase judges, rebase.py), else the smaller of it and the whole frame."""
        raw = load_block(self._ctx, record)
        assert record.width is not None  # a raw block left to encode is a tensor block
        if len(fresh) < DEFERRED_DELTA_MARGIN * whole_estimate(raw, record.width):
            return fresh
        whole = self._whole(record)
        return whole if len(whole) <= len(fresh) else fresh

    def _fresh_delta(self, record: BlockRecord, base: BlockRecord, limit: int) -> bytes | None:
        """A delta of the block on ``base`` (a block the client holds), encoded now, if
        smaller than ``limit`` bytes."""
        raw = memoryview(load_block(self._ctx, record))
        base_raw = self._base_raw(base, record, raw)
        codec = self._ctx.codec  # deltas grouped as the store's are (docs/design.md, "Pulls")
        encoded = None
        if record.width is not None and base.raw_len == record.raw_len:
            encoded = codec.encode_delta(raw, base_raw, record.width, limit)
        if encoded is None:
            encoded = codec.encode_prefixed(raw, base_raw, limit)
        if encoded is None:
            return None
        kind, payload = encoded
        head = frame_head(record.block_id, kind, len(raw), len(payload), base.block_id)
        return head + bytes(payload)

    def _read_runs(self) -> None:
        """Cut the entries of wanted blocks that follow one another in a pack into
        pieces of at most READ_AHEAD_BYTES, each read with one read when its first
        block is wanted (``_entry``): a torch.save file's hundreds of small blocks cost
        a read each."""
        records = [self._records[bid] for bid, _ in self._wanted]
        for run in adjacent_runs(records):
            piece: list[BlockRecord] = []
            for record in run:
                if piece and record.entry_end - piece[0].offset > READ_AHEAD_BYTES:
                    self._add_piece(piece)
                    piece = []
                piece.append(record)
            self._add_piece(piece)

    def _add_piece(self, piece: list[BlockRecord]) -> None:
        if len(piece) < 2:
            return
        for record in piece:
            self._piece_of.setdefault(record.block_id, len(self._pieces))
        self._pieces.append(piece)

    def _read_piece(self, index: int) -> None:
        """Read piece ``index``, dropping what is left of the piece read before."""
        run, self._pieces[index] = self._pieces[index], []
        self._read.clear()
        start, end = run[0].offset, run[-1].entry_end
        try:
            data = memoryview(self._ctx.blocks.get(run[0].pack_id, start, end - start))
        except (PackNotFound, OSError):
            return  # each is read alone, which follows a block GC moved
        if len(data) == end - start:
            for r in run:
                self._read[r.block_id] = data[r.offset - start : r.entry_end - start]

    def _base_raw(
        self, base: BlockRecord, record: BlockRecord, raw: memoryview
    ) -> bytes | memoryview:
        """The raw bytes of ``base``. The held block is most often the same tensor a save
        earlier, stored as a delta on this very block: decoded on ``raw`` then, rather
        than reading and decoding the block a second time."""
        if base.base_id == record.block_id:
            base, entry = self._entry(base)
            if base.base_id == record.block_id:
                return decode_entry(self._ctx, base, entry, raw)
        return load_block(self._ctx, base)

    def _entry(self, record: BlockRecord) -> tuple[BlockRecord, bytes | memoryview]:
        """The block's pack entry; follows a block that GC moved meanwhile."""
        index = self._piece_of.pop(record.block_id, None)
        if index is not None and self._pieces[index]:
            self._read_piece(index)
        if (read := self._read.pop(record.block_id, None)) is not None:
            return record, read
        try:
            return record, self._ctx.blocks.get(record.pack_id, record.offset, record.entry_len)
        except PackNotFound:
            moved = self._ctx.catalog.get_block(record.block_id)
            if moved is None or moved.pack_id == record.pack_id:
                raise MissingBlockError([record.block_id.hex()]) from None
            return moved, self._ctx.blocks.get(moved.pack_id, moved.offset, moved.entry_len)
