"""Dedup-aware upload of a pending checkpoint: cut and hash locally with the store's
chunker, ask which blocks the server lacks, send only those (compressed while it
pays, several requests in flight), then commit the block list.

The protocol is described in ``ckptstore/server/routes/uploads.py``.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ckptstore.blockframes import FRAMES_V2, frames_v2
from ckptstore.client.records import record_of
from ckptstore.client.transport import Transport
from ckptstore.errors import CheckpointExists
from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.chunking.fingerprint import iter_blocks
from ckptstore.store.chunking.sources import Source
from ckptstore.store.drafts import ProgressFields
from ckptstore.store.files import DEFAULT_MODE, check_path, is_tree, qualified_slot, walk_tree
from ckptstore.store.ids import content_digest
from ckptstore.store.ingest import Part

Progress = Callable[[int], None]
ASK_BYTES = 32 * 1024 * 1024  # block bytes per "which are missing?" request
SEND_BYTES = 8 * 1024 * 1024  # block bytes per upload request


@dataclass(frozen=True)
class Block:
    """A block to send, with what the server needs to encode it well."""

    data: bytes
    width: int  # tensor element width; 0 for opaque bytes
    slot: str | None  # "<tensor>#<index>": pairs blocks of consecutive checkpoints for deltas


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


class BlockPush:
    """Uploads of one client; counts the block bytes it sent, before compression."""

    def __init__(self, transport: Transport, in_flight: int) -> None:
        self._transport = transport
        self._in_flight = in_flight
        self._local = threading.local()
        self._sent_lock = threading.Lock()
        self._wire = WireCompression()
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
    ) -> CheckpointRecord:
        """Send the blocks of ``source`` the server lacks, then commit the checkpoint
        (with ``fields``: the epoch, step and metrics of the training that fills it).
        A folder's files are cut one by one, as the store cuts them (files.py)."""
        if is_tree(source):
            assert isinstance(source, str | os.PathLike)
            parts = [Part(f.path, f.mode, f.source) for f in walk_tree(source)]
            layout = "tree"
        else:
            name = file_name or (
                Path(source).name if isinstance(source, str | os.PathLike) else None
            )
            parts = [Part(check_path(name) if name else "", DEFAULT_MODE, source)]
            layout = "file"
        return self._fill(
            checkpoint_id, parts, layout, chunker, max_batch_bytes, progress, fields or {}
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
    ) -> CheckpointRecord:
        base = f"/v2/training/checkpoints/{checkpoint_id}"
        limit = min(SEND_BYTES, max_batch_bytes // 2)
        ids: list[bytes] = []
        slots: list[str | None] = []
        offered: set[bytes] = set()
        batch: dict[bytes, Block] = {}
        batch_bytes = 0
        sends: deque[Future[None]] = deque()
        files: list[dict[str, object]] = []
        with ThreadPoolExecutor(2) as hashers, ThreadPoolExecutor(self._in_flight) as senders:
            for part in parts:
                size = 0
                for blocks in iter_blocks(part.source, chunker, hashers):
                    for bid, view, cut in blocks:
                        slot = qualified_slot(part.path, cut.slot) if layout == "tree" else cut.slot
                        ids.append(bid)
                        slots.append(slot)
                        size += len(view)
                        if bid not in offered:
                            offered.add(bid)
                            # bytes: the window buffer is reused soon
                            batch[bid] = Block(bytes(view), cut.width, slot)
                            batch_bytes += len(view)
                        if progress is not None:
                            progress(len(view))
                    if batch_bytes >= ASK_BYTES:
                        self._send_missing(base, batch, limit, senders, sends)
                        batch, batch_bytes = {}, 0
                if part.path:
                    files.append({"path": part.path, "sizeBytes": size, "mode": part.mode})
            if batch:
                self._send_missing(base, batch, limit, senders, sends)
            for future in sends:
                future.result()
        layout_fields: dict[str, object] = {"files": files, "layout": layout} if files else {}
        return self._commit(base, ids, slots, fields, layout_fields)

    def _send_missing(
        self,
        base: str,
        batch: dict[bytes, Block],
        limit: int,
        senders: ThreadPoolExecutor,
        sends: deque[Future[None]],
    ) -> None:
        answer = self._transport.request(
            "POST", f"{base}/blocks/missing", json={"blockIds": [b.hex() for b in batch]}
        ).json()
        group: list[tuple[bytes, Block]] = []
        group_bytes = 0
        for hex_id in answer["missing"]:
            bid = bytes.fromhex(hex_id)
            group.append((bid, batch[bid]))
            group_bytes += len(batch[bid].data)
            if group_bytes >= limit:
                sends.append(senders.submit(self._send_blocks, base, group))
                group, group_bytes = [], 0
        if group:
            sends.append(senders.submit(self._send_blocks, base, group))
        while len(sends) > self._in_flight:
            sends.popleft().result()

    def _send_blocks(self, base: str, blocks: list[tuple[bytes, Block]]) -> None:
        body = frames_v2([(bid, b.data, b.width, b.slot) for bid, b in blocks])
        headers = {"Content-Type": FRAMES_V2}
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
            self.bytes_sent += sum(len(block.data) for _, block in blocks)

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
