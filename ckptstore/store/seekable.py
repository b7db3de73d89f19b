"""SeekableReader: the file plumbing shared by the local and the remote checkpoint readers."""

from __future__ import annotations

import io

from ckptstore.errors import InvalidArgument


class SeekableReader(io.RawIOBase):
    """A read-only, seekable binary file of ``size`` bytes; subclasses fill ``readinto``
    from ``self._pos`` (and advance it). ``read(n)`` returns ``n`` bytes unless at the end."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

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
        if base is None:
            raise InvalidArgument("whence", whence, "0, 1 or 2")
        if base + offset < 0:
            raise InvalidArgument("offset", base + offset, "a position >= 0")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(0, self._size - self._pos)
        buf = bytearray(remaining if size is None or size < 0 else min(size, remaining))
        n = self.readinto(buf)
        return bytes(buf) if n == len(buf) else bytes(buf[:n])

    def readall(self) -> bytes:
        return self.read(-1)
