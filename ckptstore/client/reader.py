"""A seekable file over a signed download URL, read with HTTP Range requests."""

from __future__ import annotations

import io

from ckptstore.client.transport import Transport
from ckptstore.errors import InvalidArgument

CHUNK_BYTES = 8 * 1024 * 1024


class RemoteReader(io.RawIOBase):
    """Random access to a remote checkpoint; fetches ``CHUNK_BYTES`` at a time."""

    def __init__(self, transport: Transport, url: str, size: int) -> None:
        super().__init__()
        self._transport = transport
        self._url = url
        self._size = size
        self._pos = 0
        self._chunk_start = 0
        self._chunk = b""

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}.get(whence)
        if base is None or base + offset < 0:
            raise InvalidArgument("offset", offset, "a position >= 0")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
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

    def read(self, size: int = -1) -> bytes:
        remaining = max(0, self._size - self._pos)
        buf = bytearray(remaining if size is None or size < 0 else min(size, remaining))
        return bytes(buf[: self.readinto(buf)])

    def readall(self) -> bytes:
        return self.read(-1)

    def _fetch(self, start: int, wanted: int) -> None:
        end = min(self._size, start + max(wanted, CHUNK_BYTES))
        response = self._transport.request(
            "GET", self._url, headers={"Range": f"bytes={start}-{end - 1}"}
        )
        self._chunk_start, self._chunk = start, response.content
