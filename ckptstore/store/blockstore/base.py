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
    """

    @abstractmethod
    def put(self, name: str, data: bytes | memoryview) -> None:
        """Store ``data`` under the new name ``name``."""

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
