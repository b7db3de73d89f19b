"""The read path: manifest -> pack byte range -> decode -> verify hash -> bytes, as a
seekable file over one checkpoint (blocks load through ``packs.entries``)."""

from __future__ import annotations

import bisect
import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from ckptstore.errors import IntegrityError, InvalidArgument
from ckptstore.store.catalog.base import BlockRecord, FileRecord
from ckptstore.store.context import StoreContext
from ckptstore.store.files import restore_path
from ckptstore.store.ids import content_digest
from ckptstore.store.packs.entries import Loaded, load_each

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

# Consecutive small whole blocks are fetched as one task of about this many raw bytes:
# a torch.save file holds hundreds of tiny tensors and entry headers, and a task per
# block cost more in futures and thread handoffs than decoding them (bench: ab). A
# delta is a task of its own: its chain costs more than its size says.
TASK_BYTES = 256 * 1024


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


class CheckpointReader(SeekableReader):
    """A seekable, read-only file over one checkpoint's bytes.

    Blocks are fetched ahead of the read position (``readahead_bytes``) by the store's thread pool,
    so decompression overlaps the caller's work; random access costs only the
    blocks touched (found by binary search on the manifest offsets).
    """

    def __init__(self, ctx: StoreContext, manifest: list[tuple[int, BlockRecord]], size: int):
        super().__init__(size)
        self._ctx = ctx
        self._offsets = [offset for offset, _ in manifest]
        self._records = [record for _, record in manifest]
        ends = [*self._offsets[1:], size] if self._offsets else []
        for start, end, record in zip(self._offsets, ends, self._records, strict=True):
            if end - start != record.raw_len:  # reads would make no progress there
                raise IntegrityError(
                    f"the manifest gives block {record.block_id.hex()} {end - start} bytes"
                    f" at offset {start}; the block has {record.raw_len}"
                )
        # blocks [_low, _ahead) are being fetched: index -> its task, its place in the
        # task's list (a task fetches consecutive blocks)
        self._fetched: dict[int, tuple[Future[list[Loaded]], int]] = {}
        self._low = self._ahead = 0
        # how far past the read position blocks are decoded; a caller that knows where
        # its read stops (one tensor of a file) lowers it to that
        self.readahead_bytes = ctx.config.readahead_bytes
        self._read_end = size  # no block starting here or later is decoded ahead

    def readinto(self, buffer: Buffer) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self._size:
            index = bisect.bisect_right(self._offsets, self._pos) - 1
            data = self._block(index)
            start = self._pos - self._offsets[index]
            n = min(len(out) - done, len(data) - start)
            out[done : done + n] = data[start : start + n]
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        self._drop_from(0)
        super().close()

    def _drop_from(self, index: int) -> None:
        """Forget every fetch; the next starts at ``index``."""
        for future, _ in self._fetched.values():
            future.cancel()
        self._fetched.clear()
        self._low = self._ahead = index

    def slice(self, offset: int, size: int) -> CheckpointReader:
        """A reader of the bytes ``[offset, offset + size)``, which must start and end at
        block edges (a file of a folder checkpoint does); this reader is closed."""
        start = bisect.bisect_left(self._offsets, offset)
        stop = bisect.bisect_left(self._offsets, offset + size)
        if size and (start == len(self._offsets) or self._offsets[start] != offset):
            raise IntegrityError(f"no block starts at offset {offset}, where a file starts")
        manifest = [(self._offsets[i] - offset, self._records[i]) for i in range(start, stop)]
        self.close()
        return CheckpointReader(self._ctx, manifest, size)

    def content_digest(self) -> str:
        """A digest of the content (its block ids in order): equal bytes, equal digest."""
        return content_digest(record.block_id for record in self._records)

    # -- block fetching --------------------------------------------------------
    def _block(self, index: int) -> bytes | memoryview:
        # Read ahead by bytes, not blocks: a torch.save file interleaves 1 MiB tensor
        # blocks with runs of tiny ones, and a count of blocks left the pool idle there.
        # A reader moves forward: the blocks passed by are dropped and new ones fetched at
        # the front, each step costing only what changed. Scanning the whole window for
        # every block read, with hundreds of small blocks in it, slowed restores
        # measurably (docs/performance.md, "Read path").
        if not self._low <= index <= self._ahead:
            self._drop_from(index)  # a seek out of the window
        while self._low < index:
            task, _ = self._fetched.pop(self._low)
            self._low += 1
            if self._fetched.get(self._low, (None, 0))[0] is not task:
                task.cancel()  # no later block needs it
        limit = min(self._offsets[index] + self.readahead_bytes, self._read_end)
        stop = max(index + 1, bisect.bisect_left(self._offsets, limit, lo=index))
        while self._ahead < stop:
            first, raw = self._ahead, 0
            while self._ahead < stop and raw < TASK_BYTES:
                record = self._records[self._ahead]
                if record.base_id is not None and self._ahead > first:
                    break  # a delta decodes its chain: one task each spreads them on the pool
                raw += record.raw_len
                self._ahead += 1
                if record.base_id is not None:
                    break
            task = self._ctx.pool.submit(load_each, self._ctx, self._records[first : self._ahead])
            for i in range(first, self._ahead):
                self._fetched[i] = (task, i - first)
        task, place = self._fetched[index]
        loaded = task.result()[place]
        if isinstance(loaded, Exception):
            raise loaded
        return loaded

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[memoryview]:
        """The bytes ``[start, end)`` as a sequence of views, block by block."""
        end = self._size if end is None else min(end, self._size)
        self._read_end = end  # a range (an HTTP Range request) decodes nothing past it
        self.seek(start)
        while self._pos < end:
            index = bisect.bisect_right(self._offsets, self._pos) - 1
            data = memoryview(self._block(index))
            begin = self._pos - self._offsets[index]
            stop = min(len(data), end - self._offsets[index])
            self._pos += stop - begin
            yield data[begin:stop]


def write_tree(
    reader: CheckpointReader,
    files: list[FileRecord],
    dest: Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write each file of a folder checkpoint (whose bytes ``reader`` reads) under
    ``dest``, made if needed, with its permission bits; returns the byte count."""
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    for record in files:
        target = restore_path(dest, record.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for view in reader.iter_range(record.offset, record.offset + record.size_bytes):
                out.write(view)
                total += len(view)
                if progress is not None:
                    progress(len(view))
        os.chmod(target, record.mode)
    return total
