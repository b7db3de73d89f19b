"""Pulls by blocks: the client fetches a checkpoint's blocks as the store keeps them
(``store/blockfetch.py``), decodes them on its own threads and checks every block
against its id before writing it.

Each file goes to ``<path>.part`` (with ``<path>.part.etag``: the file's content
digest) and is renamed to ``<path>`` once every block is in; a part file left by an
interrupted pull is reused for the blocks in it that hash right. Several batches are
in flight at once, each a request answered by a stream of frames; a stream cut
short is resumed by asking again for the blocks it did not bring. A block the
client holds in a cached earlier checkpoint of the job (``HeldBytes``) is read from
there, and the others may come as deltas on the held blocks at their places.
"""

from __future__ import annotations

import base64
import bisect
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ckptstore.client.transport import Transport
from ckptstore.errors import (
    CkptStoreError,
    FormatError,
    IntegrityError,
    ServerUnavailable,
    error_class,
)
from ckptstore.store.catalog.records import FileRecord
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.codecs.ids import DecodeError
from ckptstore.store.fetchframes import Frame, FrameReader, StreamError
from ckptstore.store.ids import block_id, content_digest

Progress = Callable[[int], None]
BATCH_RAW_BYTES = 16 << 20  # raw bytes asked for in one request
MAX_BATCH_BLOCKS = 4096  # the server's limit per request (blockfetch.MAX_FETCH_BLOCKS)
MAX_BLOCK_BYTES = 1 << 31  # a frame announcing more is refused before it is buffered
READ_BYTES = 1 << 20


@dataclass(frozen=True)
class RemoteListing:
    """A checkpoint's block list as the server gives it (``GET .../blocks``)."""

    checkpoint_id: str
    layout: str
    size_bytes: int
    files: list[FileRecord]
    ids: bytes  # 32 bytes per block, in order
    raw_lens: np.ndarray  # int64, one per block
    offsets: np.ndarray  # int64, where each block starts in the checkpoint
    held_id: str | None
    held_bases: np.ndarray | None  # int64 index into the held list per block, -1: none

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RemoteListing:
        ids = base64.b64decode(body["blockIds"])
        raw_lens = np.frombuffer(base64.b64decode(body["rawLengths"]), "<u4").astype(np.int64)
        count = int(body["blockCount"])
        offsets = np.zeros(count, np.int64)
        np.cumsum(raw_lens[:-1], out=offsets[1:])
        bases = body.get("heldBases")
        held = None if bases is None else np.frombuffer(base64.b64decode(bases), "<i4")
        files = [
            FileRecord(str(f["path"]), int(f["offset"]), int(f["sizeBytes"]), int(f["mode"]))
            for f in body["files"]
        ]
        listing = cls(
            str(body["checkpointId"]),
            str(body["layout"]),
            int(body["sizeBytes"]),
            files,
            ids,
            raw_lens,
            offsets,
            body.get("held"),
            None if held is None else held.astype(np.int64),
        )
        if (
            len(ids) != 32 * count
            or len(raw_lens) != count
            or (held is not None and len(held) != count)
            or int(raw_lens.sum()) != listing.size_bytes
            or content_digest(listing.block_ids(0, count)) != body["contentDigest"]
        ):
            raise FormatError(f"the block list of {listing.checkpoint_id} is not consistent")
        return listing

    def __len__(self) -> int:
        return len(self.raw_lens)

    def block_id(self, index: int) -> bytes:
        return self.ids[32 * index : 32 * index + 32]

    def block_ids(self, start: int, stop: int) -> Iterator[bytes]:
        return (self.block_id(i) for i in range(start, stop))

    def blocks_of(self, file: FileRecord) -> range:
        """The indexes of the file's blocks (no block spans two files)."""
        first = int(np.searchsorted(self.offsets, file.offset, "left"))
        last = int(np.searchsorted(self.offsets, file.offset + file.size_bytes, "left"))
        if file.size_bytes == 0:
            last = first
        return range(first, last)

    def digest_of(self, file: FileRecord) -> str:
        """The file's content digest: the ETag of its signed URL, its blob's name."""
        span = self.blocks_of(file)
        return content_digest(self.block_ids(span.start, span.stop))


class HeldBytes:
    """A cached checkpoint's bytes by block id: its listing and the path of each file."""

    def __init__(self, listing: RemoteListing, paths: list[Path]) -> None:
        self.listing = listing
        self._paths = paths
        self._starts = [f.offset for f in listing.files]
        self._index: dict[bytes, int] = {}
        for i in range(len(listing)):
            self._index.setdefault(listing.block_id(i), i)
        self.damaged = False  # a block read back did not hash right: name no more bases

    def index_of(self, bid: bytes) -> int | None:
        return self._index.get(bid)

    def read(self, index: int) -> bytes | None:
        """The raw bytes of the held block ``index``, None unless they hash to its id
        (a cached file changed or gone)."""
        listing = self.listing
        at = int(listing.offsets[index])
        file = bisect.bisect_right(self._starts, at) - 1
        size = int(listing.raw_lens[index])
        try:
            with open(self._paths[file], "rb") as f:
                f.seek(at - self._starts[file])
                data = f.read(size)
        except OSError:
            data = b""
        if len(data) == size and block_id(data) == listing.block_id(index):
            return data
        self.damaged = True
        return None


@dataclass(frozen=True)
class Target:
    """A file of the listing and where it goes."""

    file: FileRecord
    path: Path
    digest: str

    @property
    def part(self) -> Path:
        return self.path.with_name(self.path.name + ".part")

    @property
    def tag(self) -> Path:
        return self.path.with_name(self.path.name + ".part.etag")


class BlockPull:
    """Pulls of one server's checkpoints by blocks."""

    def __init__(self, transport: Transport, in_flight: int = 4) -> None:
        self._transport = transport
        self.in_flight = max(1, in_flight)
        self._codec = BlockCodec()
        self._received = 0
        self._count_lock = threading.Lock()  # batches count from several threads

    @property
    def bytes_received(self) -> int:
        """Frame bytes received by all pulls so far."""
        return self._received

    def _count(self, n: int) -> None:
        with self._count_lock:
            self._received += n

    def listing(self, checkpoint_id: str, held: str | None = None) -> RemoteListing:
        """The block list of ``checkpoint_id`` (paired with ``held``'s when given)."""
        params = {} if held is None else {"held": held}
        path = f"/v2/training/checkpoints/{quote(checkpoint_id, safe='')}/blocks"
        return RemoteListing.from_json(self._transport.request("GET", path, params=params).json())

    def pull(
        self,
        listing: RemoteListing,
        targets: list[tuple[FileRecord, Path]],
        held: HeldBytes | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Write each ``(file, path)`` of the listing to its path, all at once; returns the
        bytes written. On IntegrityError no part file stays; after other errors the part
        files stay for the next pull to reuse."""
        placed = [Target(f, path, listing.digest_of(f)) for f, path in targets]
        run = _Run(self, listing, placed, held, progress)
        try:
            run.start()
            run.fetch()
        except IntegrityError:
            run.discard()
            raise
        finally:
            run.close()
        run.finish()
        return sum(f.size_bytes for f, _ in targets)

    # -- one batch ---------------------------------------------------------------
    def fetch_batch(
        self,
        listing: RemoteListing,
        wanted: dict[bytes, bytes | None],
        held: HeldBytes | None,
        deliver: Callable[[bytes, memoryview], None],
    ) -> None:
        """Fetch the blocks ``wanted`` (id -> base id or None), passing each, decoded and
        checked, to ``deliver``; a stream cut short is asked again for what it lacked."""
        missing = dict(wanted)
        decoded: dict[bytes, bytes | memoryview] = {}  # blocks of this batch, as bases
        path = f"/v2/training/checkpoints/{quote(listing.checkpoint_id, safe='')}/blocks/fetch"

        def attempt() -> None:
            damaged = held is not None and held.damaged
            body = {
                "blocks": [bid.hex() for bid in missing],
                "bases": [None if b is None or damaged else b.hex() for b in missing.values()],
            }
            response = self._transport.stream("POST", path, {}, json=body)
            reader = FrameReader(MAX_BLOCK_BYTES)
            try:
                for chunk in response.iter_bytes(READ_BYTES):
                    self._count(len(chunk))
                    for frame in _frames(reader, chunk):
                        raw = self._decode(frame, decoded, held)
                        decoded[frame.block_id] = raw
                        if frame.block_id in missing:
                            del missing[frame.block_id]
                            deliver(frame.block_id, memoryview(raw))
            finally:
                response.close()
            if missing:
                raise ServerUnavailable(0, "short_body", f"{len(missing)} block(s) not received")

        try:
            return self._transport.retry.call(attempt)
        except _HeldDamaged:
            pass  # asked again, naming no base: the cached copy is not trusted
        try:
            return self._transport.retry.call(attempt)
        except _HeldDamaged as exc:  # a delta on a held block that was not named
            raise IntegrityError(f"block {exc} came as a delta on a block not named") from None

    def _decode(
        self, frame: Frame, decoded: dict[bytes, bytes | memoryview], held: HeldBytes | None
    ) -> bytes | memoryview:
        name = frame.block_id.hex()
        base: bytes | memoryview | None = None
        if frame.base_id is not None:
            base = decoded.get(frame.base_id)
            if base is None and held is not None:
                index = held.index_of(frame.base_id)
                base = None if index is None else held.read(index)
            if base is None and held is not None and held.damaged:
                raise _HeldDamaged(name)
            if base is None:
                raise IntegrityError(f"block {name} came as a delta on a block not held")
        try:
            raw = self._codec.decode(frame.codec, frame.payload, frame.raw_len, base)
        except (DecodeError, FormatError) as exc:
            raise IntegrityError(f"block {name} received does not decode: {exc}") from None
        if block_id(raw) != frame.block_id:
            raise IntegrityError(f"block {name} received does not hash to its id")
        return raw


class _HeldDamaged(Exception):
    """A delta's base, in the cached checkpoint, no longer hashes to its id."""


def _frames(reader: FrameReader, chunk: bytes) -> Iterator[Frame]:
    try:
        yield from reader.feed(chunk)
    except StreamError as exc:
        raise _stream_error(exc.body) from None


def _stream_error(body: dict[str, Any]) -> CkptStoreError:
    error = body.get("error", {})
    cls = error_class(str(error.get("type", "")))
    message = str(error.get("message", "the server ended the stream"))
    fields = error.get("fields")
    if cls is not None and isinstance(fields, dict):
        return cls.from_wire(message, fields)
    return ServerUnavailable(500, str(error.get("code", "stream_error")), message)


class _Run:
    """One pull: its part files, the blocks to fetch and the batches in flight."""

    def __init__(
        self,
        puller: BlockPull,
        listing: RemoteListing,
        targets: list[Target],
        held: HeldBytes | None,
        progress: Progress | None,
    ) -> None:
        self._puller = puller
        self._listing = listing
        self._targets = sorted(targets, key=lambda t: t.file.offset)
        self._starts = [t.file.offset for t in self._targets]
        self._held = held
        self._progress = progress
        self._fds: list[int] = []
        self._places: dict[bytes, list[int]] = {}  # block id -> indexes still to write

    def start(self) -> None:
        """Open the part files (reusing what a part of the same content holds)."""
        listing = self._listing
        for target in self._targets:
            target.path.parent.mkdir(parents=True, exist_ok=True)
            reuse = target.part.exists() and _read_tag(target.tag) == target.digest
            fd = os.open(target.part, os.O_RDWR | os.O_CREAT | (0 if reuse else os.O_TRUNC), 0o644)
            self._fds.append(fd)
            os.ftruncate(fd, target.file.size_bytes)
            target.tag.write_text(f'"{target.digest}"')
            have = 0
            for i in listing.blocks_of(target.file):
                if reuse and self._holds(fd, target, i):
                    have += int(listing.raw_lens[i])
                else:
                    self._places.setdefault(listing.block_id(i), []).append(i)
            if have and self._progress:
                self._progress(have)

    def _holds(self, fd: int, target: Target, index: int) -> bool:
        size = int(self._listing.raw_lens[index])
        at = int(self._listing.offsets[index]) - target.file.offset
        data = os.pread(fd, size, at)
        return len(data) == size and block_id(data) == self._listing.block_id(index)

    def fetch(self) -> None:
        """Every block still to write: from the held checkpoint, else by batches."""
        wanted: dict[bytes, bytes | None] = {}
        listing, held = self._listing, self._held
        for bid, places in list(self._places.items()):
            base = None
            if held is not None and listing.held_bases is not None:
                index = int(listing.held_bases[places[0]])
                base = held.listing.block_id(index) if index >= 0 else None
                if base == bid:  # the cached checkpoint holds this very block
                    raw = held.read(index)
                    if raw is not None:
                        self._write(bid, memoryview(raw))
                        continue
                    base = None
            wanted[bid] = base
        in_flight = self._puller.in_flight
        with ThreadPoolExecutor(in_flight, "ckptstore-pull") as pool:
            pending: deque[Future[None]] = deque()
            try:
                for batch in self._batches(wanted):
                    while len(pending) >= 2 * in_flight:  # a bounded number in flight
                        pending.popleft().result()
                    fetch = self._puller.fetch_batch
                    pending.append(pool.submit(fetch, listing, batch, held, self._write))
                while pending:
                    pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()
        if self._places:
            raise IntegrityError(f"{len(self._places)} block(s) of the pull were not received")

    def _batches(self, wanted: dict[bytes, bytes | None]) -> Iterator[dict[bytes, bytes | None]]:
        batch: dict[bytes, bytes | None] = {}
        size = 0
        for bid, base in wanted.items():
            raw_len = int(self._listing.raw_lens[self._places[bid][0]])
            if batch and (size + raw_len > BATCH_RAW_BYTES or len(batch) >= MAX_BATCH_BLOCKS):
                yield batch
                batch, size = {}, 0
            batch[bid] = base
            size += raw_len
        if batch:
            yield batch

    def _write(self, bid: bytes, raw: memoryview) -> None:
        """The block at each of its places (called from the pull's threads)."""
        for index in self._places.pop(bid, []):
            if len(raw) != int(self._listing.raw_lens[index]):
                raise IntegrityError(f"block {bid.hex()} has another length than listed")
            at = int(self._listing.offsets[index])
            which = bisect.bisect_right(self._starts, at) - 1
            os.pwrite(self._fds[which], raw, at - self._targets[which].file.offset)
            if self._progress:
                self._progress(len(raw))

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def discard(self) -> None:
        """Remove the part files: bytes that failed a check are not kept for later."""
        for target in self._targets:
            target.part.unlink(missing_ok=True)
            target.tag.unlink(missing_ok=True)

    def finish(self) -> None:
        """Rename each part file into place (every block of it was checked)."""
        for target in self._targets:
            target.part.replace(target.path)
            target.tag.unlink(missing_ok=True)


def _read_tag(tag: Path) -> str | None:
    try:
        return tag.read_text().strip('"')
    except OSError:
        return None
