"""A folder checkpoint as one tar archive, streamed with no temporary file.

The layout is deterministic: members in checkpoint order, each a POSIX (pax)
header made by ``tarfile`` (mode from the file, mtime the checkpoint's creation
time, uid and gid 0, no user or group names), the file's bytes, zero padding to
512 bytes; then two zero blocks. So the archive's size and where each member's
bytes lie are known before a byte is read, and any byte range can be served from
the blocks under it (HTTP Range). Folders are not members: ``tar`` makes them
as it extracts the files under them.
"""

from __future__ import annotations

import bisect
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from ckptstore.store.catalog.records import FileRecord
from ckptstore.store.restore import CheckpointReader

BLOCK = tarfile.BLOCKSIZE
END = bytes(2 * BLOCK)


def member_header(record: FileRecord, mtime: float) -> bytes:
    """The tar header (with a pax header first when the path needs one) of a file."""
    info = tarfile.TarInfo(record.path)
    info.size = record.size_bytes
    info.mode = record.mode
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


@dataclass(frozen=True)
class _Piece:
    """A stretch of the archive: fixed bytes, or ``length`` bytes of the checkpoint
    from ``source_offset``."""

    start: int  # in the archive
    length: int
    fixed: bytes | None = None
    source_offset: int = 0


class TarStream:
    """The archive of a folder checkpoint over a reader of its bytes: ``size`` and
    ``iter_range`` as ``CheckpointReader`` has them, so a download serves either."""

    def __init__(self, reader: CheckpointReader, files: list[FileRecord], mtime: float) -> None:
        self._reader = reader
        self._pieces: list[_Piece] = []
        position = 0
        for record in files:
            header = member_header(record, mtime)
            padding = bytes(-record.size_bytes % BLOCK)
            for piece in (
                _Piece(position, len(header), header),
                _Piece(position + len(header), record.size_bytes, None, record.offset),
                _Piece(position + len(header) + record.size_bytes, len(padding), padding),
            ):
                if piece.length:
                    self._pieces.append(piece)
            position += len(header) + record.size_bytes + len(padding)
        self._pieces.append(_Piece(position, len(END), END))
        self.size = position + len(END)
        self._starts = [piece.start for piece in self._pieces]

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes | memoryview]:
        """The archive's bytes ``[start, end)``, piece by piece."""
        end = self.size if end is None else min(end, self.size)
        index = max(0, bisect.bisect_right(self._starts, start) - 1)
        while start < end and index < len(self._pieces):
            piece = self._pieces[index]
            begin = start - piece.start
            stop = min(piece.length, end - piece.start)
            if piece.fixed is not None:
                yield piece.fixed[begin:stop]
            else:
                first = piece.source_offset + begin
                yield from self._reader.iter_range(first, piece.source_offset + stop)
            start = piece.start + stop
            index += 1

    def content_digest(self) -> str:
        """Equal for equal archives: the blocks' digest (the files and headers of a
        checkpoint never change)."""
        return f"{self._reader.content_digest()}.tar"

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> TarStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
