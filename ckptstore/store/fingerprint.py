"""Block ids of a stream without storing it: what a client computes before uploading.

Uses the store's own window sources and chunker, so the ids match what the
store would cut; hashing runs on a thread pool (BLAKE3 releases the GIL).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ckptstore.store.chunking import Chunker, ChunkerParams
from ckptstore.store.ids import block_id
from ckptstore.store.sources import Source, open_source

WINDOW_BYTES = 4 * 1024 * 1024


def fingerprint(
    source: Source,
    params: ChunkerParams,
    pool: ThreadPoolExecutor,
    window_bytes: int = WINDOW_BYTES,
) -> list[tuple[bytes, int]]:
    """``(block_id, raw_len)`` of every block of ``source``, in order."""
    chunker = Chunker(params)
    windows = open_source(source, window_bytes)
    blocks: list[tuple[bytes, int]] = []
    carry = memoryview(b"")
    eof = False
    try:
        while not eof:
            window, eof = windows.next_window(carry)
            ends = chunker.cut(window, final=eof)
            starts = [0, *ends[:-1]] if ends else []
            views = [window[s:e] for s, e in zip(starts, ends, strict=True)]
            blocks += zip(pool.map(block_id, views), map(len, views), strict=True)
            carry = window[ends[-1] if ends else 0 :]
    finally:
        windows.close()
    return blocks
