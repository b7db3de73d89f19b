"""The write path: windows -> blocks -> BLAKE3 ids -> dedup -> encode -> packs.

Blocks are cut by FastCDC, or per tensor (chunking.py); a new tensor block is
encoded as a delta against the same slot of the job's previous checkpoint
when that looks smaller (deltas.py), else as zstd of its bytes or byte planes.

Hashing and compression run in the store's thread pool (both release the
GIL). Three windows are in flight: window k is read and cut on the calling
thread while window k-1 is hashed and window k-2 compressed by the pool, so
every core stays busy; packs are sealed on a background thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from ckptstore.store.chunking import BlockCutter, Cut
from ckptstore.store.codecs import plane_width
from ckptstore.store.context import StoreContext
from ckptstore.store.deltas import DeltaBases
from ckptstore.store.encoder import BlockEncoder, Encoded
from ckptstore.store.ids import block_id
from ckptstore.store.leases import LeaseKeeper
from ckptstore.store.sources import WindowSource
from ckptstore.store.writer import PackWriter

_Staged = list[tuple[bytes, int, "Future[Encoded]"]]
_Hashing = tuple[list[int], list[memoryview], list[Cut], Iterator[bytes]]


@dataclass(frozen=True)
class IngestResult:
    manifest: list[tuple[int, bytes]]  # (logical offset, block id) in stream order
    slots: list[str | None]  # the tensor slot of each manifest entry
    size_bytes: int
    stored_bytes: int  # bytes of the packs this ingest wrote
    new_blocks: int
    delta_blocks: int  # new blocks stored as deltas


class Ingest:
    """Stores one stream's blocks; the caller commits the manifest afterwards."""

    def __init__(self, ctx: StoreContext, holder: str, bases: DeltaBases | None = None) -> None:
        self._ctx = ctx
        self._writer = PackWriter(ctx, holder)
        self._cutter = BlockCutter(ctx.chunker)
        self._seen: set[bytes] = set()  # ids leased from the catalog or written by us
        self._leases = LeaseKeeper(ctx, holder)
        self._encoder = BlockEncoder(ctx, bases or DeltaBases({}), self._leases)
        self._planes = ctx.codec.byte_planes
        self._new_blocks = 0
        self._delta_blocks = 0

    def run(self, source: WindowSource) -> IngestResult:
        try:
            return self._run(source)
        finally:
            self._writer.close()

    def _run(self, source: WindowSource) -> IngestResult:
        manifest: list[tuple[int, bytes]] = []
        slots: list[str | None] = []
        carry = memoryview(b"")
        offset = 0  # logical offset of the next window's first byte (its carry included)
        eof = False
        hashing: _Hashing | None = None  # the previous window, its ids being computed
        encoding: _Staged = []  # the window before that, its new blocks being compressed
        while True:
            cut: _Hashing | None = None
            if not eof:
                window, eof = source.next_window(carry)
                cuts = self._cutter.cut(window, offset, final=eof)
                ends = [c.end for c in cuts]
                starts = [0, *ends[:-1]] if ends else []
                views = [window[start:end] for start, end in zip(starts, ends, strict=True)]
                cut = (
                    [offset + s for s in starts],
                    views,
                    cuts,
                    self._ctx.pool.map(block_id, views),
                )
                consumed = ends[-1] if ends else 0
                carry = window[consumed:]
                offset += consumed
            if hashing is not None:
                offsets, views, cut_info, ids_iter = hashing
                ids = list(ids_iter)
                manifest.extend(zip(offsets, ids, strict=True))
                slots.extend(c.slot for c in cut_info)
                staged = self._stage(ids, views, cut_info)
                self._store(encoding)
                encoding = staged
            if cut is None:
                break
            hashing = cut
        self._store(encoding)
        self._writer.finish()
        return IngestResult(
            manifest,
            slots,
            offset,
            self._writer.stored_bytes,
            self._new_blocks,
            self._delta_blocks,
        )

    def _stage(self, ids: list[bytes], views: list[memoryview], cuts: list[Cut]) -> _Staged:
        """Lease the blocks the store has; start encoding the ones it lacks."""
        self._leases.expires_at()  # renews this ingest's leases when they need it
        first: dict[bytes, tuple[memoryview, Cut]] = {}
        for bid, view, cut in zip(ids, views, cuts, strict=True):
            if bid not in self._seen and bid not in first:
                first[bid] = (view, cut)
        if not first:
            return []
        present = self._leases.lease_existing(list(first))
        self._seen.update(first)
        new = [(bid, view, cut) for bid, (view, cut) in first.items() if bid not in present]
        if not new:
            return []
        bases = self._encoder.bases([(bid, len(view), cut.slot) for bid, view, cut in new])
        # Tensor blocks come with their element width. Opaque ones get one byte-plane
        # verdict per window: a window is nearly always one kind of data, and judging
        # every block costs GIL time the compressors need.
        opaque = [view for _, view, cut in new if not cut.width]
        guess = plane_width(max(opaque, key=len)) if opaque and self._planes else 0
        encode = self._encoder.encode
        return [
            (
                bid,
                len(view),
                self._ctx.pool.submit(
                    encode, bid, view, cut.width or guess, cut.slot, bases.get(bid)
                ),
            )
            for bid, view, cut in new
        ]

    def _store(self, staged: _Staged) -> None:
        for bid, raw_len, future in staged:
            codec, payload, base_id = future.result()
            self._writer.add(bid, codec, raw_len, payload, base_id)
            self._delta_blocks += base_id is not None
        self._new_blocks += len(staged)
