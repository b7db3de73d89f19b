"""BaseCache: raw bytes of tensor blocks just ingested, kept for the rebases that follow.

The rebase after a commit (rebase.py) re-encodes the parent checkpoint's
blocks as deltas against the new checkpoint's blocks, which it reads here
(``peek``: they stay, since the next rebase re-encodes them in turn, and
``take``s them then). Finding them here spares decoding them from packs.
When full, entries left by earlier ingests make room, oldest first; the
blocks of the ingest that is running are never pushed out by its own later
blocks, so a checkpoint larger than the cache still finds its first part
here every time instead of thrashing.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict

MAX_WRITERS = 256  # uploads whose tags are remembered


class BaseCache:
    """Bounded by ``capacity`` bytes of raw blocks; safe to share between threads."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._generations = itertools.count(1)
        self._writers: dict[str, int] = {}  # upload id -> its tag, oldest first

    def new_generation(self, writer: str | None = None) -> int:
        """A tag for the entries of one ingest or upload (later ones get larger tags);
        an upload spread over many requests names itself as ``writer`` and keeps its
        first tag, so its later requests do not push out its earlier blocks."""
        with self._lock:
            if writer is not None and writer in self._writers:
                return self._writers[writer]
            generation = next(self._generations)
            if writer is not None:
                self._writers[writer] = generation
                while len(self._writers) > MAX_WRITERS:
                    self._writers.pop(next(iter(self._writers)))
            return generation

    def take(self, block_id: bytes) -> bytes | None:
        """The raw bytes of ``block_id`` if cached; the entry leaves the cache."""
        with self._lock:
            entry = self._entries.pop(block_id, None)
            if entry is None:
                return None
            self._size -= len(entry[0])
            return entry[0]

    def peek(self, block_id: bytes) -> bytes | None:
        """The raw bytes of ``block_id`` if cached; the entry stays."""
        with self._lock:
            entry = self._entries.get(block_id)
            return None if entry is None else entry[0]

    def offer(self, block_id: bytes, raw: bytes | memoryview, generation: int) -> None:
        """Keep a copy of ``raw`` if there is or can be made room for it."""
        if len(raw) > self.capacity or block_id in self._entries:
            return
        copy = bytes(raw)
        with self._lock:
            while self._size + len(copy) > self.capacity:
                oldest, (old_raw, old_generation) = next(iter(self._entries.items()))
                if old_generation >= generation:
                    return  # full of this ingest's own blocks
                del self._entries[oldest]
                self._size -= len(old_raw)
            if block_id not in self._entries:
                self._entries[block_id] = (copy, generation)
                self._size += len(copy)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)
