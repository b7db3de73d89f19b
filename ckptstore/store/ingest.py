"""The write path: windows -> FastCDC blocks -> BLAKE3 ids -> dedup -> zstd -> packs.

Hashing and compression run in the store's thread pool (both release the
GIL). Three windows are in flight: window k is read and cut on the calling
thread while window k-1 is hashed and window k-2 compressed by the pool, so
every core stays busy; packs are sealed on a background thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from ckptstore.store.chunking import BlockCutter
from ckptstore.store.codecs import Codec, plane_width
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import block_id
from ckptstore.store.leases import LeaseKeeper
from ckptstore.store.sources import WindowSource
from ckptstore.store.writer import PackWriter

_Staged = list[tuple[bytes, int, "Future[tuple[Codec, bytes | memoryview]]"]]
_Hashing = tuple[list[int], list[memoryview], list[int], Iterator[bytes]]


@dataclass(frozen=True)
class IngestResult:
    manifest: list[tuple[int, bytes]]  # (logical offset, block id) in stream order
    size_bytes: int
    stored_bytes: int  # bytes of the packs this ingest wrote
    new_blocks: int


class Ingest:
    """Stores one stream's blocks; the caller commits the manifest afterwards."""

    def __init__(self, ctx: StoreContext, holder: str) -> None:
        self._ctx = ctx
        self._writer = PackWriter(ctx, holder)
        self._cutter = BlockCutter(ctx.chunker)
        self._seen: set[bytes] = set()  # ids leased from the catalog or written by us
        self._leases = LeaseKeeper(ctx, holder)
        self._planes = ctx.codec.byte_planes
        self._new_blocks = 0

    def run(self, source: WindowSource) -> IngestResult:
        try:
            return self._run(source)
        finally:
            self._writer.close()

    def _run(self, source: WindowSource) -> IngestResult:
        manifest: list[tuple[int, bytes]] = []
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
                ends = [end for end, _ in cuts]
                starts = [0, *ends[:-1]] if ends else []
                views = [window[start:end] for start, end in zip(starts, ends, strict=True)]
                widths = [width for _, width in cuts]
                cut = (
                    [offset + s for s in starts],
                    views,
                    widths,
                    self._ctx.pool.map(block_id, views),
                )
                consumed = ends[-1] if ends else 0
                carry = window[consumed:]
                offset += consumed
            if hashing is not None:
                offsets, views, widths, ids_iter = hashing
                ids = list(ids_iter)
                manifest.extend(zip(offsets, ids, strict=True))
                staged = self._stage(ids, views, widths)
                self._store(encoding)
                encoding = staged
            if cut is None:
                break
            hashing = cut
        self._store(encoding)
        self._writer.finish()
        return IngestResult(manifest, offset, self._writer.stored_bytes, self._new_blocks)

    def _stage(self, ids: list[bytes], views: list[memoryview], widths: list[int]) -> _Staged:
        """Lease the blocks the store has; start compressing the ones it lacks."""
        self._leases.expires_at()  # renews this ingest's leases when they need it
        first: dict[bytes, tuple[memoryview, int]] = {}
        for bid, view, width in zip(ids, views, widths, strict=True):
            if bid not in self._seen and bid not in first:
                first[bid] = (view, width)
        if not first:
            return []
        present = self._leases.lease_existing(list(first))
        self._seen.update(first)
        new = [(bid, view, width) for bid, (view, width) in first.items() if bid not in present]
        if not new:
            return []
        # Tensor blocks come with their element width. Opaque ones get one byte-plane
        # verdict per window: a window is nearly always one kind of data, and judging
        # every block costs GIL time the compressors need.
        opaque = [view for _, view, width in new if not width]
        guess = plane_width(max(opaque, key=len)) if opaque and self._planes else 0
        encode = self._ctx.codec.encode
        return [
            (bid, len(view), self._ctx.pool.submit(encode, view, width or guess))
            for bid, view, width in new
        ]

    def _store(self, staged: _Staged) -> None:
        for bid, raw_len, future in staged:
            codec, payload = future.result()
            self._writer.add(bid, codec, raw_len, payload)
        self._new_blocks += len(staged)
