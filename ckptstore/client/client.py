"""Client: the checkpoint API of a remote ckptstore server, as ``CheckpointAPI`` has it.

The same methods, parameters, return types and exceptions as ``CheckpointStore``
(``ckptstore/api.py``), plus what only a remote store has: signed download
URLs, upload progress, the caller's usage. ``put`` sends only the blocks the
server lacks (``push.py``), as deltas on the job's previous checkpoint when a
copy of it is on disk (``bases.py``); ``restore`` and ``download`` fetch the
blocks as the store keeps them, check each and resume an interrupted pull
(``pull.py``).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Unpack
from urllib.parse import quote

import httpx

from ckptstore.client.bases import BaseFinder, PushMemory
from ckptstore.client.cache import DownloadCache, default_cache_dir
from ckptstore.client.pull import BlockPull, HeldBytes, RemoteListing
from ckptstore.client.push import BlockPush, Progress
from ckptstore.client.reader import RemoteReader
from ckptstore.client.records import (
    TenantUsage,
    endpoint_of,
    files_of,
    gc_report_of,
    record_of,
    summary_of,
    usage_of,
)
from ckptstore.client.transport import Payload, RetryPolicy, Transport
from ckptstore.errors import CheckpointNotReady, InvalidArgument, InvalidLimit, NotFound
from ckptstore.store.catalog.base import CheckpointRecord, EndpointRecord, FileRecord
from ckptstore.store.checkpoints import CheckpointFields, CheckpointPage, JobSummary
from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.chunking.sources import Source
from ckptstore.store.drafts import MAX_LIST_LIMIT, ProgressFields
from ckptstore.store.files import check_file_name, restore_path
from ckptstore.store.gc import GcReport
from ckptstore.store.policies import JobSettings

MAX_PAGE = 1000  # checkpoints per list answer: the server's limit
HELD_CANDIDATES = 20  # a job's newest checkpoints looked for in the download cache


class Client:
    """A ckptstore server, with the methods of ``CheckpointAPI``; the API key is the tenant."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        http: httpx.Client | None = None,
        in_flight: int = 4,
        attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        cache_dir: str | os.PathLike[str] | None = None,
        push_deltas: bool = True,
    ) -> None:
        """``cache_dir``: the download cache (``cache.py``; by default ``~/.cache/ckptstore``)
        of ``download``, and of ``restore`` when given (a pull then fetches deltas on a
        checkpoint of the job cached there); it also notes what was pushed last per job.
        ``push_deltas``: send blocks encoded, as deltas on the job's previous checkpoint
        when it is on disk (False: raw blocks, as before version-3 frames; no previous
        checkpoint read, no push noted)."""
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgument("server", base_url, "an http:// or https:// URL")
        retry = RetryPolicy(attempts=attempts, sleep=sleep)
        self._transport = Transport(base_url, api_key, http=http, retry=retry)
        self._push = BlockPush(self._transport, in_flight)
        self._pull = BlockPull(self._transport, in_flight)
        self._info: dict[str, Any] | None = None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: PushMemory | None = None
        if push_deltas:
            self._memory = PushMemory(self._cache_root(), self._transport.base_url, api_key)

    @classmethod
    def from_env(cls) -> Client:
        """``CKPTSTORE_SERVER`` and ``CKPTSTORE_API_KEY``."""
        server = os.environ.get("CKPTSTORE_SERVER")
        if not server:
            raise InvalidArgument(
                "CKPTSTORE_SERVER", server, "the server's URL, e.g. http://host:8000"
            )
        return cls(server, os.environ.get("CKPTSTORE_API_KEY"))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def bytes_sent(self) -> int:
        """Block bytes sent by ``put`` and ``fill`` so far, as the frames carry them (a
        delta's payload where one was sent), before the body's compression."""
        return self._push.bytes_sent

    @property
    def bytes_received(self) -> int:
        """Block frame bytes received by ``restore`` and ``download`` so far."""
        return self._pull.bytes_received

    # -- write -----------------------------------------------------------------
    def put(
        self,
        job_id: str,
        source: Source,
        *,
        progress: Progress | None = None,
        file_name: str | None = None,
        **fields: Unpack[CheckpointFields],
    ) -> CheckpointRecord:
        """Store ``source`` (a file, bytes, a stream, or a folder, as
        ``CheckpointStore.put``) as a new checkpoint of ``job_id``, sending only the
        blocks the server lacks."""
        fields.setdefault("type", "automatic")
        pending = self.create_pending(job_id, **fields)
        return self._fill(pending.checkpoint_id, job_id, source, progress, file_name, {})

    def create_pending(self, job_id: str, **fields: Unpack[CheckpointFields]) -> CheckpointRecord:
        """Record a checkpoint whose data comes later (``fill``); type ``manual`` by default."""
        body = {k: v for k, v in fields.items() if v is not None}
        return record_of(self._json("POST", f"{_job(job_id)}/checkpoints", json=body))

    def fill(
        self,
        checkpoint_id: str,
        source: Source,
        *,
        progress: Progress | None = None,
        file_name: str | None = None,
        **fields: Unpack[ProgressFields],
    ) -> CheckpointRecord:
        """Upload the data of a pending checkpoint (dedup-aware; a file or a folder),
        with the epoch, step and metrics of the training that fills it, if given."""
        return self._fill(checkpoint_id, None, source, progress, file_name, fields)

    def _fill(
        self,
        checkpoint_id: str,
        job_id: str | None,
        source: Source,
        progress: Progress | None,
        file_name: str | None,
        fields: ProgressFields,
    ) -> CheckpointRecord:
        """``fill``, as deltas on the job's previous checkpoint where a copy is on disk;
        a file or folder pushed is noted as the job's latest copy."""
        max_batch = int(self.info()["maxBlockBatchBytes"])
        finder = None
        if self._memory is not None and 3 in self.info().get("blockFrameVersions", ()):
            cache = DownloadCache(self._cache_root(), self._transport.base_url)
            finder = BaseFinder(
                self._transport, self._memory, cache, self.chunker, checkpoint_id, job_id
            )
        record = self._push.fill(
            quote(checkpoint_id, safe=""),
            source,
            self.chunker(),
            max_batch,
            progress,
            fields,
            file_name,
            finder,
        )
        if self._memory is not None and isinstance(source, str | os.PathLike):
            self._memory.remember(record.job_id, record.checkpoint_id, Path(source))
        return record

    def _cache_root(self) -> Path:
        return self._cache_dir if self._cache_dir is not None else default_cache_dir()

    # -- read ------------------------------------------------------------------
    def get(self, checkpoint_id: str) -> CheckpointRecord:
        """One checkpoint; ``CheckpointNotFound`` also when another tenant owns it."""
        return record_of(self._json("GET", _checkpoint(checkpoint_id)))

    def resolve(self, reference: str) -> str:
        """The id of the checkpoint ``reference`` names: an id, a unique prefix of one,
        ``JOB:latest``, ``JOB:best`` or ``JOB:final`` (resolved by the server)."""
        return self.get(reference).checkpoint_id

    def download_url(self, checkpoint_id: str) -> str:
        """A fresh signed URL (valid one hour, no key needed); it names the checkpoint by
        its id, so a URL got for ``JOB:latest`` keeps naming that checkpoint."""
        return self._signed(checkpoint_id)[1]

    def _signed(self, reference: str) -> tuple[str, str]:
        """The id ``reference`` resolves to, and a fresh signed URL of it."""
        body = self._json("GET", _checkpoint(reference))
        if body["downloadUrl"] is None:
            raise CheckpointNotReady(reference)
        return str(body["checkpointId"]), str(body["downloadUrl"])

    def list(
        self,
        job_id: str,
        *,
        sort_by: str = "createdAt",
        order: str = "desc",
        limit: int | None = 50,
        types: tuple[str, ...] | None = None,
        cursor: str | None = None,
    ) -> CheckpointPage:
        """A page of a job's checkpoints; those lacking the sort metric come last.
        ``cursor``: the ``next_cursor`` of the page before; ``limit=None``: every
        checkpoint (fetched a server page at a time)."""
        if limit is not None and not (
            isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= MAX_LIST_LIMIT
        ):
            raise InvalidLimit(limit, 1, MAX_LIST_LIMIT)
        wanted = limit
        records: builtins.list[CheckpointRecord] = []
        while True:
            page_size = MAX_PAGE if wanted is None else min(MAX_PAGE, wanted - len(records))
            params: dict[str, Any] = {"sortBy": sort_by, "sortOrder": order, "limit": page_size}
            if types is not None:
                params["type"] = builtins.list(types)
            if cursor is not None:
                params["cursor"] = cursor
            body = self._json("GET", f"{_job(job_id)}/checkpoints", params=params)
            records += [record_of(c) for c in body["checkpoints"]]
            cursor = body.get("nextCursor")
            if cursor is None or (wanted is not None and len(records) >= wanted):
                return CheckpointPage(records, body["totalCount"], cursor)

    def job_summary(self, job_id: str) -> JobSummary:
        """The job's best and latest checkpoints, how many it has and their total size."""
        return summary_of(self._json("GET", f"{_job(job_id)}/summary"))

    def jobs(self) -> builtins.list[str]:
        return builtins.list(self._json("GET", "/v2/training/jobs")["jobs"])

    def files(self, checkpoint_id: str) -> builtins.list[FileRecord]:
        """The checkpoint's files in order, as ``CheckpointStore.files``."""
        return files_of(self._json("GET", f"{_checkpoint(checkpoint_id)}/files")["files"])

    def _file_url(self, checkpoint_id: str, path: str) -> str:
        """A fresh signed URL of one file of the checkpoint."""
        listed = self._json("GET", f"{_checkpoint(checkpoint_id)}/files")["files"]
        for entry in listed:
            if entry["path"] == path:
                return str(entry["downloadUrl"])
        raise InvalidArgument("path", path, "a file of the checkpoint")

    def open_reader(self, checkpoint_id: str, *, path: str | None = None) -> RemoteReader:
        """A seekable file over the checkpoint, or with ``path`` one file of it (HTTP
        Range requests); a folder checkpoint needs ``path``."""
        if path is None:
            if self.get(checkpoint_id).layout == "tree":
                raise InvalidArgument("path", None, "a file of the folder checkpoint (files())")
            url = self.download_url(checkpoint_id)
        else:
            url = self._file_url(checkpoint_id, path)
        head = self._transport.request("HEAD", url)
        return RemoteReader(self._transport, url, int(head.headers["content-length"]))

    def open_archive(self, checkpoint_id: str) -> RemoteReader:
        """A folder checkpoint as one tar archive (its download URL), seekable."""
        url = self.download_url(checkpoint_id)
        head = self._transport.request("HEAD", url)
        return RemoteReader(self._transport, url, int(head.headers["content-length"]))

    def restore(
        self,
        checkpoint_id: str,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        progress: Progress | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> int:
        """Write the checkpoint's bytes to a path (resuming ``<path>.part`` if one is
        there) or a binary file, or into a folder (a single file under its own name,
        a folder checkpoint's files under their paths). To a path the blocks come as
        the store keeps them and each is checked against its id (``pull.py``); to a
        binary file, through the signed URL. Returns the byte count. ``cache_dir``: a
        download cache (``download``) whose checkpoint of the same job the pull
        fetches deltas on."""
        if isinstance(dest, str | os.PathLike):
            # the reference is resolved once: a pull of JOB:latest that resumes keeps
            # fetching the checkpoint it started with
            held = None
            cache_dir = cache_dir if cache_dir is not None else self._cache_dir
            if cache_dir is not None:
                cache = DownloadCache(cache_dir, self._transport.base_url)
                record = self.get(checkpoint_id)
                checkpoint_id = record.checkpoint_id
                held_id, held_path = self._held_candidate(cache, record)
                held = None if held_id is None else self._held(held_id, held_path)
            held_id = None if held is None else held.listing.checkpoint_id
            listing = self._pull.listing(checkpoint_id, held_id)
            target = Path(dest)
            if listing.layout == "tree":
                targets = [(f, restore_path(target, f.path)) for f in listing.files]
                total = self._pull.pull(listing, targets, held, progress)
                for f, path in targets:
                    os.chmod(path, f.mode & 0o777)  # permission bits only: no setuid from a server
                return total
            if target.is_dir():  # the server's name is checked: no folder, no "..", not absolute
                target = target / check_file_name(listing.files[0].path)
            return self._pull.pull(listing, [(listing.files[0], target)], held, progress)
        total = 0
        with self.open_reader(checkpoint_id) as reader:
            while chunk := reader.read(8 << 20):
                dest.write(chunk)
                total += len(chunk)
                if progress:
                    progress(len(chunk))
        return total

    def download(
        self,
        checkpoint_id: str,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Path:
        """The checkpoint in the local download cache (``cache_dir``, else the client's:
        ``cache.py``): the path of its file, or of a folder checkpoint's folder.
        Files already there, under any checkpoint, are not fetched again. The server is
        asked first every time, so a key that may not read the checkpoint (another
        tenant's sharing the cache directory, or after a delete) gets nothing from it."""
        cache = DownloadCache(cache_dir or self._cache_root(), self._transport.base_url)
        body = self._json("GET", _checkpoint(checkpoint_id))  # an alias resolves here
        record = record_of(body)
        if (hit := cache.cached(record.checkpoint_id)) is not None:
            return hit
        if record.status != "ready":
            raise CheckpointNotReady(record.checkpoint_id)
        held_id, held_path = self._held_candidate(cache, record)
        listing = self._pull.listing(record.checkpoint_id, held_id)
        missing = [f for f in listing.files if not cache.has_blob(listing.digest_of(f))]
        # the held checkpoint's list only when some bytes are to be fetched
        held = self._held(held_id, held_path) if missing and held_id is not None else None
        blobs = {
            file.path: cache.blob(
                f'"{listing.digest_of(file)}"',
                partial(self._fetch_blob, listing, file, held=held, progress=progress),
            )
            for file in listing.files
        }
        if listing.layout == "tree":
            return cache.link_folder(record.checkpoint_id, blobs)
        (only,) = listing.files
        return cache.link_file(record.checkpoint_id, only.path, blobs[only.path])

    def _fetch_blob(
        self,
        listing: RemoteListing,
        file: FileRecord,
        path: Path,
        *,
        held: HeldBytes | None,
        progress: Progress | None,
    ) -> None:
        """Write the blob of one file of the listing (every block checked)."""
        self._pull.pull(listing, [(file, path)], held, progress)

    def _held_candidate(
        self, cache: DownloadCache, record: CheckpointRecord
    ) -> tuple[str | None, Path | None]:
        """The newest other ready checkpoint of the job that the cache holds (to pull
        deltas on) and its path there; None among the job's newest."""
        for other in self.list(record.job_id, limit=HELD_CANDIDATES).checkpoints:
            if other.checkpoint_id == record.checkpoint_id or other.status != "ready":
                continue
            if (path := cache.cached(other.checkpoint_id)) is not None:
                return other.checkpoint_id, path
        return None, None

    def _held(self, checkpoint_id: str, path: Path | None) -> HeldBytes | None:
        """The cached checkpoint's bytes by block id; None if it is gone meanwhile."""
        try:
            listing = self._pull.listing(checkpoint_id)
        except NotFound:
            return None
        if path is None:
            return None
        tree = listing.layout == "tree"
        return HeldBytes(listing, [path / f.path for f in listing.files] if tree else [path])

    # -- settings, endpoints ------------------------------------------------------
    def job_settings(self, job_id: str) -> JobSettings:
        return JobSettings.from_dict(self._json("GET", f"{_job(job_id)}/settings"))

    def set_job_settings(self, job_id: str, settings: JobSettings) -> JobSettings:
        body = self._json("PUT", f"{_job(job_id)}/settings", json=settings.as_dict())
        return JobSettings.from_dict(body)

    def deploy(
        self, checkpoint_id: str, *, name: str, gpu_ids: builtins.list[str], worker_count: int
    ) -> EndpointRecord:
        """Record an endpoint serving ``checkpoint_id``; the checkpoint is pinned meanwhile."""
        body = {
            "name": name,
            "checkpointId": checkpoint_id,
            "gpuIds": gpu_ids,
            "workerCount": worker_count,
        }
        return endpoint_of(self._json("POST", "/v2/endpoints", json=body))

    def update_endpoint(
        self,
        endpoint_id: str,
        *,
        checkpoint_id: str | None = None,
        name: str | None = None,
        gpu_ids: builtins.list[str] | None = None,
        worker_count: int | None = None,
    ) -> EndpointRecord:
        """Change an endpoint; what is not given stays. A new ``checkpoint_id`` re-points it."""
        given = {
            "checkpointId": checkpoint_id,
            "name": name,
            "gpuIds": gpu_ids,
            "workerCount": worker_count,
        }
        body = {k: v for k, v in given.items() if v is not None}
        return endpoint_of(self._json("PATCH", _endpoint(endpoint_id), json=body))

    def endpoint(self, endpoint_id: str) -> EndpointRecord:
        return endpoint_of(self._json("GET", _endpoint(endpoint_id)))

    def endpoints(self) -> builtins.list[EndpointRecord]:
        return [endpoint_of(e) for e in self._json("GET", "/v2/endpoints")["endpoints"]]

    def undeploy(self, endpoint_id: str) -> None:
        self._transport.request("DELETE", _endpoint(endpoint_id))

    # -- delete, gc, usage --------------------------------------------------------
    def delete(self, checkpoint_id: str) -> CheckpointRecord:
        """Remove a checkpoint; returns it as it was deleted."""
        headers = {"Prefer": "return=representation"}
        return record_of(self._json("DELETE", _checkpoint(checkpoint_id), headers=headers))

    def gc(self, *, grace_s: float | None = None) -> GcReport:
        """Run the server's garbage collection now (an admin key's right); ``grace_s``:
        how long a block must have been unused to go, this run only."""
        params: dict[str, Any] = {} if grace_s is None else {"grace": grace_s}
        return gc_report_of(self._json("POST", "/v2/gc", params=params))

    def stats(self) -> TenantUsage:
        """The caller's checkpoints and the bytes their uploads added (not the whole
        store's figures, which a tenant is not shown)."""
        return usage_of(self._json("GET", "/v2/stats"))

    # -- what the server cuts with -------------------------------------------------
    def info(self) -> dict[str, Any]:
        """``GET /v2/store``: format version, chunker, batch limits (asked once)."""
        if self._info is None:
            self._info = self._json("GET", "/v2/store")
        return self._info

    def chunker(self) -> ChunkerParams:
        return ChunkerParams.from_dict(self.info()["chunker"])

    def _json(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        **payload: Unpack[Payload],
    ) -> dict[str, Any]:
        answer: dict[str, Any] = self._transport.request(
            method, path, headers=headers, **payload
        ).json()
        return answer


def _job(job_id: str) -> str:
    return f"/v2/training/jobs/{quote(job_id, safe='')}"


def _checkpoint(checkpoint_id: str) -> str:
    return f"/v2/training/checkpoints/{quote(checkpoint_id, safe='')}"


def _endpoint(endpoint_id: str) -> str:
    return f"/v2/endpoints/{quote(endpoint_id, safe='')}"


__all__ = ["Client", "record_of"]
