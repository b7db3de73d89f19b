"""Dedup-aware upload of a pending checkpoint: cut and hash locally with the store's
chunker, ask which blocks the server lacks, send only those (compressed while it
pays, several requests in flight), then commit the block list.

To a server that takes version-3 frames the missing blocks go encoded, on the
sending threads: whole by the store's codecs, or when the client holds the job's
previous checkpoint (bases.py) as a delta on its block at the same place where
that is smaller (deltas.py).

The protocol is described in ``ckptstore/server/routes/uploads.py``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ckptstore.blockframes import FRAMES_V2, FRAMES_V3, frames_v2, frames_v3
from ckptstore.client.bases import BaseFinder, LocalBase
from ckptstore.client.deltas import encode_block
from ckptstore.client.records import record_of
from ckptstore.client.transport import Transport
from ckptstore.errors import CheckpointExists, DeltaBaseUnavailable, UndecodableBlock
from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.chunking.fingerprint import iter_blocks
from ckptstore.store.chunking.sources import Source
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.drafts import ProgressFields
from ckptstore.store.files import (
    DEFAULT_MODE,
    check_file_name,
    is_tree,
    qualified_slot,
    walk_tree,
)
from ckptstore.store.ids import content_digest
from ckptstore.store.ingest import Part

log = logging.getLogger("ckptstore.client")

Progress = Callable[[int], None]
ASK_BYTES = 32 * 1024 * 1024  # block bytes per "which are missing?" request
SEND_BYTES = 8 * 1024 * 1024  # block bytes per upload request
FILES_IN_FLIGHT = 4  # files of a folder cut and hashed at once


@dataclass(frozen=True)
class Block:
    """A block to send, with what the server needs to encode it well."""

    data: bytes
    width: int  # tensor element width; 0 for opaque bytes
    slot: str | None  # "<tensor>#<index>": pairs blocks of consecutive checkpoints for deltas
    path: str  # the file it is in ("" for a single file)
    offset: int  # where it starts in that file


class WireCompression:
    """Compress upload batches only while it pays: float tensors shrink little under
    zstd, which then costs more CPU on both ends than it saves on a fast link. A
    batch that does not shrink by ``MIN_SAVING`` stops compression; every
    ``PROBE_EVERY``-th batch is tried again, in case the data changed (say, from
    tensors to text)."""

    MIN_SAVING = 0.10
    PROBE_EVERY = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worth_it = True
        self._batches = 0

    def should_compress(self) -> bool:
        with self._lock:
            self._batches += 1
            return self._worth_it or self._batches % self.PROBE_EVERY == 0

    def observe(self, raw_len: int, packed_len: int) -> None:
        with self._lock:
            self._worth_it = packed_len <= raw_len * (1 - self.MIN_SAVING)


class _Offers:
    """The blocks offered to the server so far, shared by the threads that cut the
    files of a folder: a new block joins the batch, and a full batch is asked about
    ("which are missing?") and its missing blocks sent, one batch at a time."""

    def __init__(
        self,
        push: BlockPush,
        base: str,
        limit: int,
        senders: ThreadPoolExecutor,
        finder: BaseFinder | None,
    ) -> None:
        self._push = push
        self._base = base
        self._finder = finder
        self._limit = limit
        self._senders = senders
        self._lock = threading.Lock()
        self._asking = threading.Lock()
        self._offered: set[bytes] = set()
        self._batch: dict[bytes, Block] = {}
        self._batch_bytes = 0
        self.sends: deque[Future[None]] = deque()

    def add(self, blocks: list[tuple[bytes, memoryview, int, str | None, str, int]]) -> None:
        """Offer ``(id, bytes, width, slot, file, offset)`` of one window; copies the new
        ones (the window's buffer is reused soon)."""
        full: dict[bytes, Block] | None = None
        with self._lock:
            for bid, view, width, slot, path, offset in blocks:
                if bid not in self._offered:
                    self._offered.add(bid)
                    self._batch[bid] = Block(bytes(view), width, slot, path, offset)
                    self._batch_bytes += len(view)
            if self._batch_bytes >= ASK_BYTES:
                full, self._batch, self._batch_bytes = self._batch, {}, 0
        if full:
            self._ask(full)

    def flush(self) -> None:
        """Ask about (and send) what the last batch holds."""
        with self._lock:
            batch, self._batch, self._batch_bytes = self._batch, {}, 0
        if batch:
            self._ask(batch)

    def _ask(self, batch: dict[bytes, Block]) -> None:
        with self._asking:
            self._push._send_missing(
                self._base, batch, self._limit, self._senders, self.sends, self._finder
            )


def _cut_file(
    part: Part,
    tree: bool,
    chunker: ChunkerParams,
    hashers: ThreadPoolExecutor,
    offers: _Offers,
    progress: Progress | None,
) -> tuple[list[bytes], list[str | None], int]:
    """Cut and hash one file as the store would, offering its blocks; its block ids,
    their slots (in a tree, qualified by the file's path) and its size."""
    ids: list[bytes] = []
    slots: list[str | None] = []
    size = 0
    file = part.path if tree else ""
    for blocks in iter_blocks(part.source, chunker, hashers):
        window: list[tuple[bytes, memoryview, int, str | None, str, int]] = []
        window_bytes = 0
        for bid, view, cut in blocks:
            slot = qualified_slot(part.path, cut.slot) if tree else cut.slot
            ids.append(bid)
            slots.append(slot)
            window.append((bid, view, cut.width, slot, file, size + window_bytes))
            window_bytes += len(view)
        offers.add(window)
        size += window_bytes
        if progress is not None:
            progress(window_bytes)
    return ids, slots, size


class BlockPush:
    """Uploads of one client; counts the block bytes it sent (as encoded in the frames:
    a delta's payload), before the body's compression."""

    def __init__(self, transport: Transport, in_flight: int) -> None:
        self._transport = transport
        self._in_flight = in_flight
        self._local = threading.local()
        self._sent_lock = threading.Lock()
        self._wire = WireCompression()
        # whole blocks without exponent groups (codec 4): a cheaper encoding than the
        # store's, a little larger, to compare deltas with and send when none is smaller
        self._codec = BlockCodec(exponent_group_log=0)
        self.bytes_sent = 0

    def fill(
        self,
        checkpoint_id: str,
        source: Source,
        chunker: ChunkerParams,
        max_batch_bytes: int,
        progress: Progress | None = None,
        fields: ProgressFields | None = None,
        file_name: str | None = None,
        finder: BaseFinder | None = None,
    ) -> CheckpointRecord:
        """Send the blocks of ``source`` the server lacks, then commit the checkpoint
        (with ``fields``: the epoch, step and metrics of the training that fills it).
        A folder's files are cut each on its own, as the store cuts them (files.py),
        several at once; their blocks share the batches sent. ``finder``: asked for
        the local copy of the job's previous checkpoint once a block is missing."""
        if is_tree(source):
            assert isinstance(source, str | os.PathLike)
            parts = [Part(f.path, f.mode, f.source) for f in walk_tree(source)]
            layout = "tree"
        else:
            name = file_name or (
                Path(source).name if isinstance(source, str | os.PathLike) else None
            )
            parts = [Part(check_file_name(name) if name else "", DEFAULT_MODE, source)]
            layout = "file"
        return self._fill(
            checkpoint_id, parts, layout, chunker, max_batch_bytes, progress, fields or {}, finder
        )

    def _fill(
        self,
        checkpoint_id: str,
        parts: list[Part],
        layout: str,
        chunker: ChunkerParams,
        max_batch_bytes: int,
        progress: Progress | None,
        fields: ProgressFields,
        finder: BaseFinder | None,
    ) -> CheckpointRecord:
        base = f"/v2/training/checkpoints/{checkpoint_id}"
        limit = min(SEND_BYTES, max_batch_bytes // 2)
        with (
            ThreadPoolExecutor(2) as hashers,
            ThreadPoolExecutor(self._in_flight) as senders,
            ThreadPoolExecutor(min(FILES_IN_FLIGHT, len(parts))) as cutters,
        ):
            offers = _Offers(self, base, limit, senders, finder)

            def cut(part: Part) -> tuple[list[bytes], list[str | None], int]:
                tree = layout == "tree"
                return _cut_file(part, tree, chunker, hashers, offers, progress)

            cuts = list(cutters.map(cut, parts))  # in the parts' order
            offers.flush()
            for future in offers.sends:
                future.result()
        ids = [bid for file_ids, _, _ in cuts for bid in file_ids]
        slots = [slot for _, file_slots, _ in cuts for slot in file_slots]
        files = [
            {"path": part.path, "sizeBytes": size, "mode": part.mode}
            for part, (_, _, size) in zip(parts, cuts, strict=True)
            if part.path
        ]
        layout_fields: dict[str, object] = {"files": files, "layout": layout} if files else {}
        return self._commit(base, ids, slots, fields, layout_fields)

    def _send_missing(
        self,
        base: str,
        batch: dict[bytes, Block],
        limit: int,
        senders: ThreadPoolExecutor,
        sends: deque[Future[None]],
        finder: BaseFinder | None,
    ) -> None:
        answer = self._transport.request(
            "POST", f"{base}/blocks/missing", json={"blockIds": [b.hex() for b in batch]}
        ).json()
        # with a finder (the server takes version 3), blocks go encoded, as deltas on
        # the local copy of the previous checkpoint where there is one
        encode = finder is not None
        local = finder.get() if finder is not None and answer["missing"] else None
        group: list[tuple[bytes, Block]] = []
        group_bytes = 0
        for hex_id in answer["missing"]:
            bid = bytes.fromhex(hex_id)
            group.append((bid, batch[bid]))
            group_bytes += len(batch[bid].data)
            if group_bytes >= limit:
                sends.append(senders.submit(self._send_blocks, base, group, encode, local))
                group, group_bytes = [], 0
        if group:
            sends.append(senders.submit(self._send_blocks, base, group, encode, local))
        while len(sends) > self._in_flight:
            sends.popleft().result()

    def _send_blocks(
        self,
        base: str,
        blocks: list[tuple[bytes, Block]],
        encode: bool,
        local: LocalBase | None,
    ) -> None:
        """Send one group: with ``encode``, each block encoded (version 3), as a delta on
        ``local`` where that is smaller; raw frames otherwise, or if the server refuses
        those deltas (its copy of a base is gone)."""
        if encode:
            sent = [
                encode_block(self._codec, bid, b.data, b.width, b.slot, (b.path, b.offset), local)
                for bid, b in blocks
            ]
            try:
                self._put(base, frames_v3(sent), FRAMES_V3, sum(len(s.payload) for s in sent))
                return
            except (DeltaBaseUnavailable, UndecodableBlock) as exc:
                log.warning("sending %d blocks whole: %s", len(blocks), exc)
        body = frames_v2([(bid, b.data, b.width, b.slot) for bid, b in blocks])
        self._put(base, body, FRAMES_V2, sum(len(b.data) for _, b in blocks))

    def _put(self, base: str, body: bytes, content_type: str, block_bytes: int) -> None:
        headers = {"Content-Type": content_type}
        if self._wire.should_compress():
            compressor = getattr(self._local, "zstd", None)
            if compressor is None:
                compressor = self._local.zstd = zstandard.ZstdCompressor(level=1)
            packed = compressor.compress(body)
            self._wire.observe(len(body), len(packed))
            if len(packed) < len(body):
                body, headers["Content-Encoding"] = packed, "zstd"
        self._transport.request("PUT", f"{base}/blocks", content=body, headers=headers)
        with self._sent_lock:
            self.bytes_sent += block_bytes

    def _commit(
        self,
        base: str,
        ids: list[bytes],
        slots: list[str | None],
        fields: ProgressFields,
        layout: dict[str, object],
    ) -> CheckpointRecord:
        given = {name: value for name, value in fields.items() if value is not None}
        body = {"blockIds": [b.hex() for b in ids], "slots": slots, **given, **layout}
        try:
            return record_of(self._transport.request("POST", f"{base}/commit", json=body).json())
        except CheckpointExists:
            # A retried commit whose first attempt did land finds the checkpoint ready,
            # and so does a commit that lost to another writer: only the first holds
            # exactly these blocks, which the download's ETag (their digest) tells.
            answer = self._transport.request("GET", base).json()
            record = record_of(answer)
            if record.status != "ready" or self._etag(answer) != f'"{content_digest(ids)}"':
                raise
            return record

    def _etag(self, answer: dict[str, object]) -> str | None:
        url = answer.get("downloadUrl")
        if not isinstance(url, str):
            return None
        etag: str | None = self._transport.request("HEAD", url).headers.get("etag")
        return etag
