"""The write path: windows -> blocks -> BLAKE3 ids -> dedup -> encode -> packs.

Blocks are cut by FastCDC, or per tensor (chunking.py); a new block is stored
whole, as zstd of its bytes or byte planes (the parent checkpoint becomes
deltas on it after the commit: rebase.py).

The stream is then committed (commit.py) by ``ingest``, which runs it all.

Hashing and compression run in the store's thread pool (both release the
GIL). Three windows are in flight: window k is read and cut on the calling
thread while window k-1 is hashed and window k-2 compressed by the pool, so
every core stays busy; packs are sealed on a background thread. The SHA-256 of
each file (files.py) is computed as its windows are read, on one more thread
(the hash is sequential; hashlib releases the GIL): no second read.

A folder is stored as its files one after the other (files.walk_tree), each cut
on its own, so a block never spans two files and a tensor's blocks sit at the
same slots of the same file in the job's next checkpoint.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ckptstore.store.catalog.base import Leases
from ckptstore.store.catalog.records import CheckpointRecord, FileRecord
from ckptstore.store.chunking.cutter import BlockCutter, Cut
from ckptstore.store.chunking.sources import WINDOWS_IN_FLIGHT, Source, open_source
from ckptstore.store.codecs.encoder import BlockEncoder, Encoded
from ckptstore.store.codecs.estimate import plane_width
from ckptstore.store.commit import Committer
from ckptstore.store.context import StoreContext
from ckptstore.store.files import (
    DEFAULT_MODE,
    check_file_name,
    default_name,
    is_tree,
    qualified_slot,
    walk_tree,
)
from ckptstore.store.ids import block_id, new_upload_id
from ckptstore.store.packs.writer import PackWriter

# (block id, raw length, tensor width or None) of each block of a task, and the task's
# encodings in that order
_Staged = list[tuple[list[tuple[bytes, int, int | None]], "Future[list[Encoded]]"]]
_Hashing = tuple[list[int], list[memoryview], list[Cut], list["Future[list[bytes]]"]]
# Small blocks (headers, biases, norms: most blocks of a torch.save file, few of its
# bytes) go to the pool in groups of about this many bytes: one task per block would
# cost more in futures and thread handoffs than hashing and compressing them.
TASK_BYTES = 256 * 1024


def _groups(sizes: list[int]) -> list[range]:
    """Consecutive index ranges, each closed by the item that brings it to TASK_BYTES
    (so a big block after small ones closes their group, and big blocks in a row
    are groups of their own)."""
    groups: list[range] = []
    start = total = 0
    for i, size in enumerate(sizes):
        total += size
        if total >= TASK_BYTES:
            groups.append(range(start, i + 1))
            start, total = i + 1, 0
    if start < len(sizes):
        groups.append(range(start, len(sizes)))
    return groups


def _hash_all(views: list[memoryview]) -> list[bytes]:
    return [block_id(view) for view in views]


class LeaseKeeper:
    """Keeps one holder's leases alive while its ingest or upload runs: renews them all
    once a third of the lease TTL has passed."""

    def __init__(self, ctx: StoreContext, holder: str) -> None:
        self._ctx = ctx
        self._leases: Leases = ctx.catalog
        self.holder = holder
        self._renewed_at = ctx.clock()

    def expires_at(self) -> float:
        """The expiry for a lease taken now; renews older leases first if they need it."""
        now = self._ctx.clock()
        ttl = self._ctx.config.lease_ttl_s
        if now - self._renewed_at > ttl / 3:
            self._leases.renew_leases(self.holder, now + ttl)
            self._renewed_at = now
        return now + ttl

    def lease_existing(self, block_ids: list[bytes]) -> set[bytes]:
        """The subset of ``block_ids`` the store has, leased to this holder."""
        return self._leases.lease_existing(block_ids, self.holder, self.expires_at())


def ingest(
    ctx: StoreContext,
    committer: Committer,
    draft: CheckpointRecord,
    source: Source,
    file_name: str | None = None,
) -> CheckpointRecord:
    """Store ``source`` (a file, bytes, a stream, or a folder: files.py) as the
    checkpoint ``draft`` and commit it; on any error its leases go at once (blocks
    already written are reclaimed by GC). ``file_name``: the name of a single file
    (default: a path's base name, else ``files.default_name``)."""
    holder = new_upload_id()
    if is_tree(source):
        assert isinstance(source, str | os.PathLike)
        parts = [Part(f.path, f.mode, f.source) for f in walk_tree(source)]
        layout = "tree"
    else:
        name = file_name or _base_name(source) or default_name(draft.checkpoint_id)
        parts = [Part(check_file_name(name), _mode_of(source), source)]
        layout = "file"
    try:
        result = Ingest(ctx, holder).run(parts, ctx.config.window_bytes, tree=layout == "tree")
        return committer.commit(
            replace(draft, layout=layout),
            result.manifest,
            result.size_bytes,
            holder,
            result.slots,
            files=result.files,
        )
    except BaseException:
        ctx.catalog.release_leases(holder)
        raise


def _base_name(source: Source) -> str | None:
    if isinstance(source, str | os.PathLike):
        return Path(source).name or None
    return None


def _mode_of(source: Source) -> int:
    if isinstance(source, str | os.PathLike):
        try:
            return stat.S_IMODE(os.stat(source).st_mode) & 0o777
        except OSError:
            return DEFAULT_MODE  # open_source names the problem
    return DEFAULT_MODE


@dataclass(frozen=True)
class Part:
    """One file of what is stored: its path in the checkpoint, its mode, its bytes."""

    path: str
    mode: int
    source: Source


@dataclass(frozen=True)
class IngestResult:
    manifest: list[tuple[int, bytes]]  # (logical offset, block id) in stream order
    slots: list[str | None]  # the tensor slot of each manifest entry
    size_bytes: int
    files: list[FileRecord]  # where each part's bytes lie, with their SHA-256


class Ingest:
    """Stores the blocks of one or more files; the caller commits the manifest afterwards.

    Each file is cut on its own (a fresh cutter), so no block spans two files, and
    hashed with SHA-256 in stream order on a thread of its own, beside the pool."""

    def __init__(self, ctx: StoreContext, holder: str) -> None:
        self._ctx = ctx
        self._writer = PackWriter(ctx, holder)
        self._seen: set[bytes] = set()  # ids leased from the catalog or written by us
        self._leases = LeaseKeeper(ctx, holder)
        self._encoder = BlockEncoder(ctx, holder)
        self._planes = ctx.codec.byte_planes
        self._files: list[FileRecord] = []
        self._digests: list[Future[str]] = []

    def run(self, parts: list[Part], window_bytes: int, *, tree: bool = False) -> IngestResult:
        with ThreadPoolExecutor(1, thread_name_prefix="ckptstore-sha256") as sha:
            windows = self._windows(parts, window_bytes, tree, sha)
            try:
                return self._run(windows)
            finally:
                windows.close()  # closes the open source
                self._writer.close()

    def _windows(
        self, parts: list[Part], window_bytes: int, tree: bool, sha: ThreadPoolExecutor
    ) -> Generator[_Hashing]:
        """Each window of each part, cut, its block ids being computed; the parts'
        bytes follow one another in the checkpoint."""
        base = 0  # logical offset of the current part's first byte
        for part in parts:
            cutter = BlockCutter(self._ctx.chunker)
            hasher = hashlib.sha256()
            updates: deque[Future[None]] = deque()
            windows = open_source(part.source, window_bytes)
            try:
                carry = memoryview(b"")
                offset = 0  # within the part: of the next window's first byte (carry included)
                eof = False
                while not eof:
                    while len(updates) >= WINDOWS_IN_FLIGHT - 1:
                        updates.popleft().result()  # its buffer is about to be reused
                    window, eof = windows.next_window(carry)
                    updates.append(sha.submit(hasher.update, window[len(carry) :]))
                    cuts = cutter.cut(window, offset, final=eof)
                    if tree:
                        cuts = [c._replace(slot=qualified_slot(part.path, c.slot)) for c in cuts]
                    ends = [c.end for c in cuts]
                    starts = [0, *ends[:-1]] if ends else []
                    views = [window[start:end] for start, end in zip(starts, ends, strict=True)]
                    hashes = [
                        self._ctx.pool.submit(_hash_all, views[group.start : group.stop])
                        for group in _groups([len(v) for v in views])
                    ]
                    yield [base + offset + s for s in starts], views, cuts, hashes
                    consumed = ends[-1] if ends else 0
                    carry = window[consumed:]
                    offset += consumed
                for update in updates:
                    update.result()
            finally:
                windows.close()
            self._digests.append(sha.submit(hasher.hexdigest))
            self._files.append(FileRecord(part.path, base, offset, part.mode))
            base += offset

    def _run(self, windows: Iterator[_Hashing]) -> IngestResult:
        manifest: list[tuple[int, bytes]] = []
        slots: list[str | None] = []
        hashing: _Hashing | None = None  # the previous window, its ids being computed
        encoding: _Staged = []  # the window before that, its new blocks being compressed
        for cut in itertools.chain(windows, [None]):
            if hashing is not None:
                offsets, views, cut_info, hashes = hashing
                ids = [bid for future in hashes for bid in future.result()]
                manifest.extend(zip(offsets, ids, strict=True))
                slots.extend(c.slot for c in cut_info)
                staged = self._stage(ids, views, cut_info)
                self._store(encoding)
                encoding = staged
            hashing = cut
        self._store(encoding)
        self._writer.finish()
        files = [
            replace(record, sha256=digest.result())
            for record, digest in zip(self._files, self._digests, strict=True)
        ]
        size = files[-1].offset + files[-1].size_bytes if files else 0
        return IngestResult(manifest, slots, size, files)

    def _stage(self, ids: list[bytes], views: list[memoryview], cuts: list[Cut]) -> _Staged:
        """Lease the blocks the store has; start encoding the ones it lacks."""
        self._leases.expires_at()  # renews this ingest's leases when they need it
        first: dict[bytes, tuple[memoryview, Cut]] = {}
        for bid, view, cut in zip(ids, views, cuts, strict=True):
            if bid not in self._seen and bid not in first:
                first[bid] = (view, cut)
        if not first:
            return []
        present = self._leases.lease_existing(list(first))
        self._seen.update(first)
        new = [(bid, view, cut) for bid, (view, cut) in first.items() if bid not in present]
        if not new:
            return []
        # Tensor blocks come with their element width. Opaque ones get one byte-plane
        # verdict per window: a window is nearly always one kind of data, and judging
        # every block costs GIL time the compressors need.
        opaque = [view for _, view, cut in new if not cut.width]
        guess = plane_width(max(opaque, key=len)) if opaque and self._planes else 0
        jobs = [(bid, view, cut.width or guess, cut.slot) for bid, view, cut in new]
        staged: _Staged = []
        for group in _groups([len(view) for _, view, _ in new]):
            part = jobs[group.start : group.stop]
            future = self._ctx.pool.submit(self._encode_all, part)
            blocks = [
                (bid, len(view), cut.width if cut.slot else None)
                for bid, view, cut in new[group.start : group.stop]
            ]
            staged.append((blocks, future))
        return staged

    def _encode_all(self, jobs: list[tuple[Any, ...]]) -> list[Encoded]:
        return [self._encoder.encode(*job) for job in jobs]

    def _store(self, staged: _Staged) -> None:
        for blocks, future in staged:
            for (bid, raw_len, width), (codec, payload) in zip(
                blocks, future.result(), strict=True
            ):
                self._writer.add(bid, codec, raw_len, payload, width=width)
