"""The write path: windows -> FastCDC blocks -> BLAKE3 ids -> dedup -> zstd -> packs.

Hashing and compression run in the store's thread pool (both release the
GIL). Window k's blocks are compressed while window k+1 is read, cut and
hashed, so both cores stay busy; at most two windows are in memory.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from ckptstore.store.chunking import Chunker
from ckptstore.store.codecs import Codec
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import block_id
from ckptstore.store.sources import WindowSource
from ckptstore.store.writer import PackWriter

_Staged = list[tuple[bytes, int, "Future[tuple[Codec, bytes | memoryview]]"]]


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
        self._chunker = Chunker(ctx.chunker)
        self._seen: set[bytes] = set()  # ids leased from the catalog or written by us
        self._renewed_at = ctx.clock()
        self._new_blocks = 0

    def run(self, source: WindowSource) -> IngestResult:
        manifest: list[tuple[int, bytes]] = []
        carry = memoryview(b"")
        offset = 0  # logical offset of the current window's first byte
        in_flight: _Staged = []
        eof = False
        while not eof:
            window, eof = source.next_window(carry)
            ends = self._chunker.cut(window, final=eof)
            starts = [0, *ends[:-1]] if ends else []
            views = [window[start:end] for start, end in zip(starts, ends, strict=True)]
            ids = list(self._ctx.pool.map(block_id, views))
            staged = self._stage(ids, views)
            self._store(in_flight)
            in_flight = staged
            manifest.extend((offset + start, bid) for start, bid in zip(starts, ids, strict=True))
            consumed = ends[-1] if ends else 0
            carry = window[consumed:]
            offset += consumed
        self._store(in_flight)
        self._writer.seal()
        return IngestResult(manifest, offset, self._writer.stored_bytes, self._new_blocks)

    def _stage(self, ids: list[bytes], views: list[memoryview]) -> _Staged:
        """Lease the blocks the store has; start compressing the ones it lacks."""
        first_view: dict[bytes, memoryview] = {}
        for bid, view in zip(ids, views, strict=True):
            if bid not in self._seen and bid not in first_view:
                first_view[bid] = view
        if not first_view:
            return []
        now = self._ctx.clock()
        ttl = self._ctx.config.lease_ttl_s
        if now - self._renewed_at > ttl / 3:
            self._ctx.catalog.renew_leases(self._writer.holder, now + ttl)
            self._renewed_at = now
        present = self._ctx.catalog.lease_existing(list(first_view), self._writer.holder, now + ttl)
        self._seen.update(first_view)
        encode = self._ctx.codec.encode
        return [
            (bid, len(view), self._ctx.pool.submit(encode, view))
            for bid, view in first_view.items()
            if bid not in present
        ]

    def _store(self, staged: _Staged) -> None:
        for bid, raw_len, future in staged:
            codec, payload = future.result()
            self._writer.add(bid, codec, raw_len, payload)
        self._new_blocks += len(staged)
