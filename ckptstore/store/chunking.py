"""Content-defined chunking (FastCDC), push-style and free of I/O.

The caller hands in a buffer and learns where the complete blocks end; the
bytes after the last boundary are an unfinished block, which the caller puts
at the front of its next buffer. FastCDC decides each cut only from the bytes
since the previous cut, so cutting window by window gives exactly the
boundaries of cutting the whole stream at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyfastcdc import FastCDC


@dataclass(frozen=True)
class ChunkerParams:
    """FastCDC parameters; persisted in the catalog so dedup stays stable."""

    min_size: int
    avg_size: int
    max_size: int
    normalized_chunking: int = 1

    def as_dict(self) -> dict[str, int]:
        return {
            "algorithm_version": 1,
            "min_size": self.min_size,
            "avg_size": self.avg_size,
            "max_size": self.max_size,
            "normalized_chunking": self.normalized_chunking,
        }


# Chosen by bench/chunk_params.py (report in bench/results/chunk_params.md).
DEFAULT_CHUNKER = ChunkerParams(min_size=64 * 1024, avg_size=256 * 1024, max_size=1024 * 1024)


class Chunker:
    """Finds block boundaries in consecutive buffers of one stream."""

    def __init__(self, params: ChunkerParams = DEFAULT_CHUNKER) -> None:
        self.params = params
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=params.normalized_chunking,
        )

    def cut(self, buf: memoryview, final: bool) -> list[int]:
        """End offsets of the complete blocks in ``buf``.

        Unless ``final``, the last block is treated as unfinished and left
        out: its bytes (``buf[ends[-1]:]``, or all of ``buf`` when the list
        is empty) must start the next buffer.
        """
        if not buf:
            return []
        ends = [chunk.offset + chunk.length for chunk in self._cdc.cut_buf(buf)]
        if not final:
            ends.pop()
        return ends
