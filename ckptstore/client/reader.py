"""A seekable file over a signed download URL, read with HTTP Range requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckptstore.client.transport import Transport
from ckptstore.store.restore import SeekableReader

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

# A request asks for what the read wants, or more: FIRST_CHUNK_BYTES after a seek,
# doubling while the reads go on where the last request ended, up to CHUNK_BYTES. A
# reader that jumps (a safetensors header, then one tensor; a zip's directory at the
# end) fetches little beyond what it reads; one reading straight through soon asks
# for large ranges.
FIRST_CHUNK_BYTES = 64 * 1024
CHUNK_BYTES = 8 * 1024 * 1024


class RemoteReader(SeekableReader):
    """Random access to a remote checkpoint with HTTP Range requests."""

    def __init__(self, transport: Transport, url: str, size: int) -> None:
        super().__init__(size)
        self._transport = transport
        self._url = url
        self._chunk_start = 0
        self._chunk = b""
        self._ahead_bytes = 0  # what the last request asked for beyond the read

    def readinto(self, buffer: Buffer) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self._size:
            offset = self._pos - self._chunk_start
            if not 0 <= offset < len(self._chunk):
                self._fetch(self._pos, len(out) - done)
                offset = 0
            n = min(len(out) - done, len(self._chunk) - offset)
            out[done : done + n] = self._chunk[offset : offset + n]
            done += n
            self._pos += n
        return done

    def _fetch(self, start: int, wanted: int) -> None:
        onward = bool(self._chunk) and start == self._chunk_start + len(self._chunk)
        first = min(FIRST_CHUNK_BYTES, CHUNK_BYTES)
        self._ahead_bytes = min(CHUNK_BYTES, self._ahead_bytes * 2) if onward else first
        end = min(self._size, start + max(wanted, self._ahead_bytes))
        response = self._transport.request(
            "GET", self._url, headers={"Range": f"bytes={start}-{end - 1}"}
        )
        self._chunk_start, self._chunk = start, response.content
