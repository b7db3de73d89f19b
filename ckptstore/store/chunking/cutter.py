"""Content-defined chunking (FastCDC), push-style and free of I/O.

The caller hands in a buffer and learns where the complete blocks end; the
bytes after the last boundary are an unfinished block, which the caller puts
at the front of its next buffer. FastCDC decides each cut only from the bytes
since the previous cut, so cutting window by window gives exactly the
boundaries of cutting the whole stream at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pyfastcdc import FastCDC

from ckptstore.store.chunking.segments import (
    WHOLE_STREAM,
    Region,
    group_small_tensors,
    header_bytes_needed,
    sniff_regions,
)
from ckptstore.store.chunking.torchzip import ZipSegmenter

NormalizationLevel = Literal[0, 1, 2, 3]  # FastCDC's normalized chunking levels
_LEVELS: dict[int, NormalizationLevel] = {0: 0, 1: 1, 2: 2, 3: 3}


@dataclass(frozen=True)
class ChunkerParams:
    """How a stream is cut; persisted in the catalog so dedup stays stable.

    Algorithm 1: FastCDC over the whole stream. Algorithm 2 (``tensor_block_bytes``
    set): tensors of a recognised format (segments.py) are cut into blocks of that
    size aligned to each tensor's start; everything else keeps FastCDC. Algorithm 3
    (``tensor_group_bytes`` set too): as 2, but consecutive tensors smaller than
    ``min_size`` (no FastCDC block is smaller) are grouped into blocks of about
    ``tensor_group_bytes`` (``segments.group_small_tensors``), and a safetensors
    header longer than the first window is read whole before the stream is cut.
    """

    min_size: int
    avg_size: int
    max_size: int
    normalized_chunking: NormalizationLevel = 1
    tensor_block_bytes: int = 0
    tensor_group_bytes: int = 0

    @property
    def algorithm_version(self) -> int:
        if self.tensor_block_bytes and self.tensor_group_bytes:
            return 3
        return 2 if self.tensor_block_bytes else 1

    def as_dict(self) -> dict[str, int]:
        fields = {
            "algorithm_version": self.algorithm_version,
            "min_size": self.min_size,
            "avg_size": self.avg_size,
            "max_size": self.max_size,
            "normalized_chunking": self.normalized_chunking,
        }
        if self.tensor_block_bytes:
            fields["tensor_block_bytes"] = self.tensor_block_bytes
        if self.algorithm_version == 3:
            fields["tensor_group_bytes"] = self.tensor_group_bytes
        return fields

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> ChunkerParams:
        version = data.get("algorithm_version")
        if version not in (1, 2, 3):
            raise ValueError(f"unknown chunker algorithm version {version}")
        level = _LEVELS.get(data["normalized_chunking"])
        if level is None:
            raise ValueError(f"unknown FastCDC normalization level {data['normalized_chunking']}")
        params = cls(
            min_size=data["min_size"],
            avg_size=data["avg_size"],
            max_size=data["max_size"],
            normalized_chunking=level,
            tensor_block_bytes=data.get("tensor_block_bytes", 0) if version != 1 else 0,
            tensor_group_bytes=data.get("tensor_group_bytes", 0) if version == 3 else 0,
        )
        if params.algorithm_version != version:
            raise ValueError(f"chunker algorithm version {version} lacks its block sizes")
        return params


# FastCDC sizes chosen by bench/chunk_params.py (report in bench/results/*-chunk-params.md);
# the group size by bench/small_tensors.py.
DEFAULT_CHUNKER = ChunkerParams(
    min_size=64 * 1024,
    avg_size=256 * 1024,
    max_size=1024 * 1024,
    tensor_block_bytes=1024 * 1024,
    tensor_group_bytes=256 * 1024,
)


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


class Cut(NamedTuple):
    """One block: where it ends in the buffer, its element width (0: opaque bytes) and
    its slot, ``"<tensor>#<block index>"`` (of a group of small tensors,
    ``"<first tensor>#<block index>+<tensors>"``), which names the same place in the
    next checkpoint of a job (None for opaque bytes)."""

    end: int
    width: int
    slot: str | None


class BlockCutter:
    """Cuts one stream into blocks, window by window (same carry contract as Chunker).

    Region edges are always cuts; opaque regions are cut by FastCDC, tensor
    regions into ``tensor_block_bytes`` blocks counted from the tensor's start,
    so an unchanged tensor gives the same blocks wherever it sits in the file.
    A group of small tensors is one region, cut the same way.
    """

    def __init__(self, params: ChunkerParams) -> None:
        self._chunker = Chunker(params)
        self._block = params.tensor_block_bytes
        self._group = params.tensor_group_bytes if params.algorithm_version == 3 else 0
        self._small = params.min_size  # a tensor under the smallest FastCDC block is small
        self._regions: list[Region] | None = None if self._block else WHOLE_STREAM
        self._zip: ZipSegmenter | None = None
        self._passed = 0  # regions before this index ended before the current buffer

    def cut(self, buf: memoryview, offset: int, final: bool) -> list[Cut]:
        """The complete blocks in ``buf``, which starts at stream ``offset``; ends are
        relative to ``buf``."""
        if self._regions is None:
            if self._group and not final and header_bytes_needed(buf) > len(buf):
                return []  # the header goes on: carry it all into the next window
            if ZipSegmenter.matches(buf):
                self._zip = ZipSegmenter()
                self._regions = []
            else:
                self._regions = sniff_regions(buf)
                if self._group:
                    self._regions = group_small_tensors(
                        self._regions, self._small, self._group, self._block
                    )
        regions, still_open, known = self._regions, None, offset + len(buf)
        if self._zip is not None:
            known = self._zip.advance(buf, offset, final)
            regions, still_open = self._zip.regions, self._zip.open_region()
        limit = min(known, offset + len(buf)) - offset  # never past this buffer
        return self._cut_regions(buf, offset, final, regions, still_open, limit)

    def _cut_regions(
        self,
        buf: memoryview,
        offset: int,
        final: bool,
        regions: list[Region],
        still_open: Region | None,
        limit: int,
    ) -> list[Cut]:
        """Cuts within ``buf[:limit]``, the part whose regions are known; ``still_open``
        is a region whose end is not known yet, after all of ``regions``."""
        cuts: list[Cut] = []
        pos = 0
        # offsets only grow, so regions that ended before this buffer never matter again
        while self._passed < len(regions) and (end := regions[self._passed].end) is not None:
            if end > offset:
                break
            self._passed += 1
        tail = [still_open] if still_open is not None else []
        for region in itertools.chain(itertools.islice(regions, self._passed, None), tail):
            if region.end is not None and region.end <= offset + pos:
                continue
            if pos >= limit:
                break
            inside = limit if region.end is None else min(limit, region.end - offset)
            closes = region.end is not None and region.end - offset <= limit
            done = closes or (final and inside == len(buf))
            piece = buf[pos:inside]
            if region.width:
                into = offset + pos - region.start
                ends = self._fixed(len(piece), into, done)
                first = into // self._block
                cuts += [
                    Cut(pos + end, region.width, region.slot(first + i))
                    for i, end in enumerate(ends)
                ]
            else:
                ends = self._chunker.cut(piece, final=done)
                cuts += [Cut(pos + end, 0, None) for end in ends]
            if not done:
                break  # the region goes on past what is known: the rest is carried
            pos = inside
        return cuts

    def _fixed(self, length: int, into_region: int, done: bool) -> list[int]:
        first = self._block - into_region % self._block
        ends = list(range(first, length + 1, self._block))
        if done and (not ends or ends[-1] != length) and length:
            ends.append(length)
        return ends
