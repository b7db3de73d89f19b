"""Block ids of a stream without storing it: what a client computes before uploading.

Uses the store's own window sources and chunker, so the ids match what the
store would cut; hashing runs on a thread pool (BLAKE3 releases the GIL).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from ckptstore.store.chunking.cutter import BlockCutter, ChunkerParams, Cut
from ckptstore.store.chunking.sources import WINDOWS_IN_FLIGHT, Source, open_source
from ckptstore.store.ids import block_id

WINDOW_BYTES = 4 * 1024 * 1024


def iter_blocks(
    source: Source,
    params: ChunkerParams,
    pool: ThreadPoolExecutor,
    window_bytes: int = WINDOW_BYTES,
) -> Iterator[list[tuple[bytes, memoryview, Cut]]]:
    """``(block_id, bytes, cut)`` of each window's blocks, window by window; the cut
    tells a tensor block's element width and slot.

    The views are valid until ``WINDOWS_IN_FLIGHT - 1`` more windows have been
    taken: copy what must live longer.
    """
    cutter = BlockCutter(params)
    windows = open_source(source, window_bytes)
    carry = memoryview(b"")
    offset = 0
    eof = False
    try:
        while not eof:
            window, eof = windows.next_window(carry)
            cuts = cutter.cut(window, offset, final=eof)
            ends = [cut.end for cut in cuts]
            starts = [0, *ends[:-1]] if ends else []
            views = [window[s:e] for s, e in zip(starts, ends, strict=True)]
            yield list(zip(pool.map(block_id, views), views, cuts, strict=True))
            consumed = ends[-1] if ends else 0
            carry = window[consumed:]
            offset += consumed
    finally:
        windows.close()


def fingerprint(
    source: Source,
    params: ChunkerParams,
    pool: ThreadPoolExecutor,
    window_bytes: int = WINDOW_BYTES,
) -> list[tuple[bytes, int]]:
    """``(block_id, raw_len)`` of every block of ``source``, in order."""
    return [
        (bid, len(view))
        for blocks in iter_blocks(source, params, pool, window_bytes)
        for bid, view, _ in blocks
    ]


__all__ = ["WINDOWS_IN_FLIGHT", "fingerprint", "iter_blocks"]
