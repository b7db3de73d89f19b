"""BlockStore: where pack objects live (a local directory now, S3-compatible later)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    modified_at: float  # seconds since the epoch


class BlockStore(ABC):
    """Immutable named objects (packs), written whole and read by byte range.

    Invariants every backend MUST keep:
    - ``put`` is atomic and durable: after it returns the object survives a
      crash; a crash during ``put`` leaves no object under ``name``.
    - ``put`` never overwrites: an existing name raises ``FileExistsError``.
    - ``get`` of a missing object raises ``PackNotFound``.
    - ``delete`` of a missing object is not an error.
    - ``list`` shows only complete objects.
    - An object written in pieces (``begin``) is invisible until its ``commit``
      returns, and then behaves as if ``put`` had stored it.
    """

    @abstractmethod
    def put(self, name: str, data: bytes | memoryview) -> None:
        """Store ``data`` under the new name ``name``."""

    def begin(self, name: str) -> PendingObject:
        """Start writing the new object ``name`` piece by piece. This default holds the
        pieces in memory and ``put``s them at commit; a backend that can write as the
        pieces come overrides it (the last piece then costs little to make durable)."""
        return _BufferedObject(self, name)

    @abstractmethod
    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes from ``offset`` (to the end when ``length`` is None)."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object if it exists."""

    @abstractmethod
    def list(self) -> Iterator[ObjectInfo]:
        """Every complete object."""

    @abstractmethod
    def sweep_incomplete(self, older_than: float) -> int:
        """Remove leftovers of interrupted puts older than ``older_than``; returns how many."""


class PendingObject(ABC):
    """An object being written in pieces (``BlockStore.begin``); nothing is visible
    under its name before ``commit``."""

    @abstractmethod
    def write(self, *parts: bytes | memoryview) -> None:
        """Append the parts, in order."""

    @abstractmethod
    def commit(self) -> None:
        """Store what was written, durably, under the object's name (``FileExistsError``
        if the name is taken: the existing object stays as it was)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written; safe to repeat, and a no-op after ``commit``."""


class _BufferedObject(PendingObject):
    def __init__(self, store: BlockStore, name: str) -> None:
        self._store = store
        self._name = name
        self._pieces: list[bytes] | None = []

    def write(self, *parts: bytes | memoryview) -> None:
        if self._pieces is None:
            raise ValueError(f"object {self._name} is already committed or aborted")
        self._pieces += map(bytes, parts)

    def commit(self) -> None:
        if self._pieces is None:
            raise ValueError(f"object {self._name} is already committed or aborted")
        pieces, self._pieces = self._pieces, None
        self._store.put(self._name, b"".join(pieces))

    def abort(self) -> None:
        self._pieces = None
