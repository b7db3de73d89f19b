"""Client: the checkpoint API of a remote ckptstore server, shaped like CheckpointStore.

``put`` cuts and hashes locally and sends only the blocks the server lacks,
compressed, several requests in flight; ``restore`` streams, resumes an
interrupted transfer with Range and checks the result against the ETag.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Unpack

import httpx
import zstandard

from ckptstore.blockframes import FRAMES_V2, frames_v2
from ckptstore.client.reader import RemoteReader
from ckptstore.client.transport import Transport
from ckptstore.errors import IntegrityError, RemoteConflict, RemoteRejected, ServerUnavailable
from ckptstore.formatting import parse_iso_time
from ckptstore.store.catalog.base import CheckpointRecord, EndpointRecord
from ckptstore.store.checkpoints import CheckpointFields, CheckpointPage, StoreStats
from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.chunking.fingerprint import fingerprint, iter_blocks
from ckptstore.store.chunking.sources import Source
from ckptstore.store.ids import content_digest
from ckptstore.store.policies import JobSettings

Progress = Callable[[int], None]
ASK_BYTES = 32 * 1024 * 1024  # block bytes per "which are missing?" request


@dataclass(frozen=True)
class Block:
    """A block to send, with what the server needs to encode it well."""

    data: bytes
    width: int  # tensor element width; 0 for opaque bytes
    slot: str | None  # "<tensor>#<index>": pairs blocks of consecutive checkpoints for deltas


SEND_BYTES = 8 * 1024 * 1024  # block bytes per upload request
LIST_LIMIT_MAX = 100


def record_of(body: dict) -> CheckpointRecord:
    """An API checkpoint object as the engine's record."""
    return CheckpointRecord(
        checkpoint_id=body["checkpointId"],
        job_id=body["jobId"],
        type=body["type"],
        name=body["name"],
        description=body.get("description"),
        epoch=body.get("epoch"),
        step=body.get("step"),
        metrics=body.get("metrics") or {},
        status=body["status"],
        size_bytes=body["sizeBytes"],
        stored_bytes=body["storedBytes"],
        created_at=parse_iso_time(body["createdAt"]),
    )


class Client:
    """A ckptstore server; the method names and return types of CheckpointStore."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        http: httpx.Client | None = None,
        in_flight: int = 4,
        attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._transport = Transport(base_url, api_key, http=http, attempts=attempts, sleep=sleep)
        self._in_flight = in_flight
        self._info: dict | None = None
        self._local = threading.local()
        self._sent_lock = threading.Lock()
        self._wire = WireCompression()
        self.bytes_sent = 0  # block bytes sent by put/fill, before compression

    @classmethod
    def from_env(cls) -> Client:
        """``CKPTSTORE_SERVER`` and ``CKPTSTORE_API_KEY``."""
        return cls(os.environ["CKPTSTORE_SERVER"], os.environ.get("CKPTSTORE_API_KEY"))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- write -----------------------------------------------------------------
    def put(
        self,
        job_id: str,
        source: Source,
        *,
        progress: Progress | None = None,
        **fields: Unpack[CheckpointFields],
    ) -> CheckpointRecord:
        """Store ``source`` as a new checkpoint of ``job_id``, sending only missing blocks."""
        pending = self.create_pending(job_id, **({"type": "automatic"} | dict(fields)))
        return self.fill(pending.checkpoint_id, source, progress=progress)

    def create_pending(self, job_id: str, **fields: Unpack[CheckpointFields]) -> CheckpointRecord:
        body = {k: v for k, v in fields.items() if v is not None}
        return record_of(self._json("POST", f"/v2/training/jobs/{job_id}/checkpoints", json=body))

    def fill(
        self, checkpoint_id: str, source: Source, *, progress: Progress | None = None
    ) -> CheckpointRecord:
        """Upload the data of a pending checkpoint (dedup-aware)."""
        base = f"/v2/training/checkpoints/{checkpoint_id}"
        ids: list[bytes] = []
        slots: list[str | None] = []
        offered: set[bytes] = set()
        batch: dict[bytes, Block] = {}
        batch_bytes = 0
        sends: deque[Future[None]] = deque()
        with ThreadPoolExecutor(2) as hashers, ThreadPoolExecutor(self._in_flight) as senders:
            for blocks in iter_blocks(source, self.chunker(), hashers):
                for bid, view, cut in blocks:
                    ids.append(bid)
                    slots.append(cut.slot)
                    if bid not in offered:
                        offered.add(bid)
                        # bytes: the window buffer is reused soon
                        batch[bid] = Block(bytes(view), cut.width, cut.slot)
                        batch_bytes += len(view)
                    if progress is not None:
                        progress(len(view))
                if batch_bytes >= ASK_BYTES:
                    self._send_missing(base, batch, senders, sends)
                    batch, batch_bytes = {}, 0
            if batch:
                self._send_missing(base, batch, senders, sends)
            for future in sends:
                future.result()
        return self._commit(base, checkpoint_id, ids, slots)

    def _send_missing(
        self, base: str, batch: dict[bytes, Block], senders: ThreadPoolExecutor, sends: deque
    ) -> None:
        answer = self._json(
            "POST", f"{base}/blocks/missing", json={"blockIds": [b.hex() for b in batch]}
        )
        group: list[tuple[bytes, Block]] = []
        group_bytes = 0
        limit = min(SEND_BYTES, self.info()["maxBlockBatchBytes"] // 2)
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
        self, base: str, checkpoint_id: str, ids: list[bytes], slots: list[str | None]
    ) -> CheckpointRecord:
        body = {"blockIds": [b.hex() for b in ids], "slots": slots}
        try:
            return record_of(self._json("POST", f"{base}/commit", json=body))
        except RemoteConflict:
            # a retried commit whose first attempt did land answers 409: accept it then
            record = self.get(checkpoint_id)
            if record.status != "ready":
                raise
            return record

    # -- read ------------------------------------------------------------------
    def get(self, checkpoint_id: str) -> CheckpointRecord:
        return record_of(self._json("GET", f"/v2/training/checkpoints/{checkpoint_id}"))

    def download_url(self, checkpoint_id: str) -> str:
        """A fresh signed URL (valid one hour, no key needed)."""
        body = self._json("GET", f"/v2/training/checkpoints/{checkpoint_id}")
        if body["downloadUrl"] is None:
            raise RemoteConflict(409, "not_ready", f"checkpoint {checkpoint_id} has no data yet")
        return body["downloadUrl"]

    def list(
        self,
        job_id: str,
        *,
        sort_by: str = "createdAt",
        order: str = "desc",
        limit: int | None = 50,
        types: tuple[str, ...] | None = None,
    ) -> CheckpointPage:
        """A page of a job's checkpoints (the server returns at most 100 per request)."""
        params: dict[str, object] = {
            "sortBy": sort_by,
            "sortOrder": order,
            "limit": LIST_LIMIT_MAX if limit is None else limit,
        }
        records: list[CheckpointRecord] = []
        total = 0
        for type_ in types or (None,):
            query = params | ({"type": type_} if type_ else {})
            body = self._json("GET", f"/v2/training/jobs/{job_id}/checkpoints", params=query)
            records += [record_of(c) for c in body["checkpoints"]]
            total += body["totalCount"]
        return CheckpointPage(records, total)

    def jobs(self) -> list[str]:
        return self._json("GET", "/v2/training/jobs")["jobs"]

    def open_reader(self, checkpoint_id: str) -> RemoteReader:
        """A seekable file over the checkpoint (HTTP Range requests)."""
        url = self.download_url(checkpoint_id)
        head = self._transport.request("HEAD", url)
        return RemoteReader(self._transport, url, int(head.headers["content-length"]))

    def restore(
        self,
        checkpoint_id: str,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        progress: Progress | None = None,
    ) -> int:
        """Download to a path (resuming ``<path>.part`` if one is there) or a binary file."""
        if not isinstance(dest, str | os.PathLike):
            with self.open_reader(checkpoint_id) as reader:
                total = 0
                while chunk := reader.read(8 << 20):
                    dest.write(chunk)
                    total += len(chunk)
                    if progress:
                        progress(len(chunk))
                return total
        return _Download(self, checkpoint_id, Path(dest), progress).run()

    # -- delete, settings, endpoints, stats -------------------------------------
    def delete(self, checkpoint_id: str) -> None:
        self._transport.request("DELETE", f"/v2/training/checkpoints/{checkpoint_id}")

    def job_settings(self, job_id: str) -> JobSettings:
        return JobSettings.from_dict(self._json("GET", f"/v2/training/jobs/{job_id}/settings"))

    def set_job_settings(self, job_id: str, settings: JobSettings) -> JobSettings:
        body = self._json("PUT", f"/v2/training/jobs/{job_id}/settings", json=settings.as_dict())
        return JobSettings.from_dict(body)

    def deploy(
        self, checkpoint_id: str, *, name: str, gpu_ids: list[str], worker_count: int
    ) -> EndpointRecord:
        body = {
            "name": name,
            "checkpointId": checkpoint_id,
            "gpuIds": gpu_ids,
            "workerCount": worker_count,
        }
        return _endpoint_of(self._json("POST", "/v2/endpoints", json=body))

    def endpoints(self) -> list[EndpointRecord]:
        return [_endpoint_of(e) for e in self._json("GET", "/v2/endpoints")["endpoints"]]

    def endpoint(self, endpoint_id: str) -> EndpointRecord:
        return _endpoint_of(self._json("GET", f"/v2/endpoints/{endpoint_id}"))

    def undeploy(self, endpoint_id: str) -> None:
        self._transport.request("DELETE", f"/v2/endpoints/{endpoint_id}")

    def gc(self) -> dict[str, int]:
        return self._json("POST", "/v2/gc")

    def stats(self) -> StoreStats:
        body = self._json("GET", "/v2/stats")
        return StoreStats(body["checkpoints"], body["logicalBytes"], 0, body["storedBytes"], 0, 0)

    # -- plumbing ---------------------------------------------------------------
    def info(self) -> dict:
        if self._info is None:
            self._info = self._json("GET", "/v2/store")
        return self._info

    def chunker(self) -> ChunkerParams:
        return ChunkerParams.from_dict(self.info()["chunker"])

    def _json(self, method: str, path: str, **kwargs: object) -> dict:
        return self._transport.request(method, path, **kwargs).json()


class WireCompression:
    """Compress upload batches only while it pays: float tensors shrink ~8% under zstd,
    which costs more CPU on both ends than it saves on a fast link. A batch that
    does not shrink by ``MIN_SAVING`` stops compression; every ``PROBE_EVERY``-th
    batch is tried again, in case the data changed (say, from tensors to text)."""

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


def _endpoint_of(body: dict) -> EndpointRecord:
    return EndpointRecord(
        endpoint_id=body["id"],
        tenant_id="",
        name=body["name"],
        checkpoint_id=body["checkpointId"],
        gpu_ids=body["gpuIds"],
        worker_count=body["workerCount"],
        status=body["status"],
        created_at=parse_iso_time(body["createdAt"]),
    )


class _Download:
    """One resumable download into ``<dest>.part``, renamed to ``dest`` once verified."""

    def __init__(self, client: Client, checkpoint_id: str, dest: Path, progress: Progress | None):
        self._client = client
        self._checkpoint_id = checkpoint_id
        self._dest = dest
        self._part = dest.with_name(dest.name + ".part")
        self._tag = dest.with_name(dest.name + ".part.etag")
        self._progress = progress
        self._transport = client._transport

    def run(self) -> int:
        url = self._client.download_url(self._checkpoint_id)
        head = self._transport.request("HEAD", url)
        size, etag = int(head.headers["content-length"]), head.headers["etag"]
        have = self._resumable(etag)
        if self._progress and have:
            self._progress(have)
        failures = 0
        while have < size:
            try:
                have = self._fetch(url, etag, have)
            except (httpx.TransportError, ServerUnavailable):
                failures += 1
                if failures >= 6:
                    raise
                time.sleep(min(8.0, 0.25 * 2**failures))
            except RemoteRejected as exc:
                if exc.code != "url_expired":
                    raise
                url = self._client.download_url(self._checkpoint_id)
        self._verify(etag)
        return size

    def _resumable(self, etag: str) -> int:
        if self._part.exists() and self._tag.exists() and self._tag.read_text() == etag:
            return self._part.stat().st_size
        self._part.write_bytes(b"")
        self._tag.write_text(etag)
        return 0

    def _fetch(self, url: str, etag: str, have: int) -> int:
        headers = {"Range": f"bytes={have}-", "If-Range": etag} if have else {}
        response = self._transport.stream("GET", url, headers)
        try:
            if have and response.status_code == 200:
                have = 0  # the content changed: start over
            with open(self._part, "r+b" if have else "wb") as out:
                out.seek(have)
                for chunk in response.iter_raw(1 << 20):
                    out.write(chunk)
                    have += len(chunk)
                    if self._progress:
                        self._progress(len(chunk))
        finally:
            response.close()
        return have

    def _verify(self, etag: str) -> None:
        with ThreadPoolExecutor(2) as pool:
            ids = (bid for bid, _ in fingerprint(self._part, self._client.chunker(), pool))
            digest = content_digest(ids)
        if f'"{digest}"' != etag:
            self._part.unlink(missing_ok=True)
            self._tag.unlink(missing_ok=True)
            raise IntegrityError(
                f"download of {self._checkpoint_id} does not match its ETag {etag}; removed"
            )
        self._part.replace(self._dest)
        self._tag.unlink(missing_ok=True)


__all__ = ["Client", "record_of"]
