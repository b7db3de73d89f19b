"""Turn what a caller hands to ``put`` into consecutive windows of one stream.

A source may be bytes-like, a path, a binary file object (any object with
``readinto``, else one with ``read``) or an iterable of byte chunks of unknown
total length. Each window starts with the unfinished tail of the previous one
(the carry), so the chunker sees the stream without gaps.

Window buffers are reused round-robin: a window's memory is overwritten
``WINDOWS_IN_FLIGHT`` windows later, so a caller may keep views into the last
``WINDOWS_IN_FLIGHT - 1`` windows and no longer. Memory stays flat however
long the stream (fresh multi-MB buffers per window fragment the C heap).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ckptstore.errors import InvalidArgument

WINDOWS_IN_FLIGHT = 3


@runtime_checkable
class Readable(Protocol):
    """A binary file read in place: ``readinto`` fills the start of ``buffer`` and returns
    how many bytes it wrote (0, or None, when there are no more)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


@runtime_checkable
class ReadsBytes(Protocol):
    """A binary file with ``read`` only: what it returns is copied into the window."""

    def read(self, size: int, /) -> bytes: ...


Source = (
    bytes
    | bytearray
    | memoryview
    | str
    | os.PathLike[str]
    | Readable
    | ReadsBytes
    | Iterable[bytes]
)


class WindowSource(Protocol):
    def next_window(self, carry: memoryview) -> tuple[memoryview, bool]:
        """The carry followed by the next bytes of the stream, and whether the stream ended."""

    def close(self) -> None: ...


class _MemorySource:
    """A bytes-like object: windows are views into it, nothing is copied."""

    def __init__(self, data: bytes | bytearray | memoryview, window_size: int) -> None:
        self._view = memoryview(data).cast("B")
        self._window_size = window_size
        self._end = 0

    def next_window(self, carry: memoryview) -> tuple[memoryview, bool]:
        start = self._end - len(carry)
        self._end = min(self._end + self._window_size, len(self._view))
        return self._view[start : self._end], self._end == len(self._view)

    def close(self) -> None:
        self._view.release()


class _BufferRing:
    """``WINDOWS_IN_FLIGHT`` reusable buffers, handed out in turn.

    They are numpy arrays, left unset when made: a bytearray is zeroed as it is
    made, on the calling thread and holding the GIL, which the pool's compressors
    then wait for; reading into fresh memory pages it in with the GIL released."""

    def __init__(self) -> None:
        self._buffers = [np.empty(0, np.uint8) for _ in range(WINDOWS_IN_FLIGHT)]
        self._next = 0

    def take(self, carry: memoryview, size: int) -> memoryview:
        """A buffer of ``len(carry) + size`` bytes that starts with a copy of ``carry``."""
        index = self._next
        self._next = (index + 1) % WINDOWS_IN_FLIGHT
        needed = len(carry) + size
        if len(self._buffers[index]) < needed:
            self._buffers[index] = np.empty(needed, np.uint8)
        buf = memoryview(self._buffers[index].data)[:needed]
        buf[: len(carry)] = carry
        return buf


def readinto_of(file: Readable | ReadsBytes) -> Callable[[memoryview], int | None]:
    """The file's ``readinto``; for a file with ``read`` only, a function that copies
    what ``read`` returns into the buffer."""
    if isinstance(file, Readable):
        return file.readinto

    def copy_into(buffer: memoryview) -> int:
        data = file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    return copy_into


class _FileSource:
    """A binary file object, read with ``readinto`` (or ``read``) into reused buffers;
    ``owned`` is closed with the source (a file it opened)."""

    def __init__(
        self, file: Readable | ReadsBytes, window_size: int, owned: io.BufferedReader | None
    ) -> None:
        self._readinto = readinto_of(file)
        self._window_size = window_size
        self._owned = owned
        self._ring = _BufferRing()

    def _fill(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view):
            got = self._readinto(view[filled:])
            if not got:
                break
            filled += got
        return filled

    def next_window(self, carry: memoryview) -> tuple[memoryview, bool]:
        buf = self._ring.take(carry, self._window_size)
        filled = self._fill(buf[len(carry) :])
        return buf[: len(carry) + filled], filled < self._window_size

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


class _IterableSource:
    """An iterable of byte chunks of any sizes, copied into reused buffers."""

    def __init__(self, chunks: Iterable[bytes], window_size: int) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._window_size = window_size
        self._leftover = memoryview(b"")
        self._ring = _BufferRing()

    def next_window(self, carry: memoryview) -> tuple[memoryview, bool]:
        buf = self._ring.take(carry, self._window_size)
        pos = len(carry)
        while pos < len(buf):
            if not self._leftover:
                chunk = next(self._chunks, None)
                if chunk is None:
                    return buf[:pos], True
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise InvalidArgument("source", type(chunk).__name__, "an iterable of bytes")
                self._leftover = memoryview(chunk).cast("B")
            take = min(len(self._leftover), len(buf) - pos)
            buf[pos : pos + take] = self._leftover[:take]
            self._leftover = self._leftover[take:]
            pos += take
        return buf, False

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def open_source(source: Source, window_size: int) -> WindowSource:
    """A WindowSource over any accepted kind of source."""
    if isinstance(source, bytes | bytearray | memoryview):
        return _MemorySource(source, window_size)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise InvalidArgument("source", str(source), "a path to a readable regular file")
        file = open(path, "rb")  # noqa: SIM115 - closed with the source
        return _FileSource(file, window_size, owned=file)
    if isinstance(source, Readable | ReadsBytes):
        return _FileSource(source, window_size, owned=None)
    if isinstance(source, Iterable):
        return _IterableSource(source, window_size)
    raise InvalidArgument(
        "source", type(source).__name__, "bytes, a path, a binary file or an iterable of bytes"
    )
