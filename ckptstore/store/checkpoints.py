"""CheckpointStore: the engine as a library (no server needed).

::

    store = CheckpointStore.open("./ckpts")
    ck = store.put("job_1", "model.pt", type="automatic", epoch=3, step=1200,
                   metrics={"loss": 0.61, "validationLoss": 0.70})
    page = store.list("job_1", sort_by="validationLoss", order="asc", limit=10)
    with store.open_reader(ck.checkpoint_id) as f: data = f.read()
    store.delete(ck.checkpoint_id); store.gc(); store.verify(read_data=True)
"""

from __future__ import annotations

import builtins  # the class defines list(); its annotations mean the builtin
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Unpack

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CheckpointNotReady,
    EndpointNotFound,
    InvalidArgument,
    UnknownSortKey,
)
from ckptstore.store.archive import TarStream
from ckptstore.store.blockstore import BlockStore, LocalBlockStore, open_blockstore
from ckptstore.store.catalog import (
    Catalog,
    CheckpointRecord,
    ExclusiveLock,
    FileRecord,
    ListQuery,
    open_catalog,
)
from ckptstore.store.catalog.records import EndpointRecord
from ckptstore.store.chunking.sources import Source
from ckptstore.store.commit import Committer
from ckptstore.store.context import (
    FORMAT_VERSION,
    Clock,
    StoreConfig,
    StoreContext,
    build_context,
)
from ckptstore.store.drafts import (
    ALWAYS_SORTABLE_METRICS,
    SORT_FIELDS,
    CheckpointFields,
    ProgressFields,
    check_list_arguments,
    may_sort_by,
    new_draft,
    sort_keys,
    with_progress,
)
from ckptstore.store.files import files_of, find_file
from ckptstore.store.gc import GcLock, GcReport, collect_garbage
from ckptstore.store.ids import (
    check_job_id,
    new_endpoint_id,
    new_upload_id,
    upload_holder,
)
from ckptstore.store.ingest import ingest
from ckptstore.store.policies import JobSettings, job_settings
from ckptstore.store.rebase import record_legacy_widths
from ckptstore.store.refs import resolve as resolve_reference
from ckptstore.store.restore import CheckpointReader, write_tree
from ckptstore.store.uploads import Upload
from ckptstore.store.verify import VerifyReport, verify_store

MAX_ENDPOINT_NAME = 256  # characters


@dataclass(frozen=True)
class CheckpointPage:
    checkpoints: list[CheckpointRecord]
    total_count: int  # all of the job's checkpoints, not only this page
    next_cursor: str | None = None  # where the next page starts; None after the last


@dataclass(frozen=True)
class JobSummary:
    best: CheckpointRecord | None  # the job's checkpoint of type best
    latest: CheckpointRecord | None
    total_count: int
    total_size_bytes: int


@dataclass(frozen=True)
class StoreStats:
    checkpoints: int
    logical_bytes: int
    unique_raw_bytes: int
    stored_bytes: int
    blocks: int
    packs: int
    pending_rebases: int = 0  # checkpoints whose parent is still to be stored as deltas

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per stored byte (1.0 for an empty store)."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0


class CheckpointStore:
    """Checkpoints of training jobs, deduplicated and compressed into packs."""

    def __init__(
        self,
        catalog: Catalog,
        blocks: BlockStore,
        *,
        config: StoreConfig | None = None,
        clock: Clock = time.time,
        lock_dir: Path | None = None,
    ) -> None:
        self._ctx = build_context(catalog, blocks, config or StoreConfig(), clock)
        record_legacy_widths(self._ctx)  # before any rebase needs them
        self._gc_lock = GcLock(lock_dir, catalog if isinstance(catalog, ExclusiveLock) else None)
        self._committer = Committer(self._ctx, self._gc_lock)
        self._committer.resume()
        self._committer.resume_digests()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        catalog: str | None = None,
        blocks: str | None = None,
        config: StoreConfig | None = None,
        clock: Clock = time.time,
    ) -> CheckpointStore:
        """A store in a local directory: ``catalog.sqlite`` beside ``packs/``; or, with
        ``catalog`` a ``postgresql://`` URL, the catalog in that database; and with
        ``blocks`` (a directory or ``s3://bucket/prefix``, see ``open_blockstore``) the
        packs there instead of in ``path/packs``. Every process sharing a PostgreSQL
        catalog must share the packs too: the same bucket, or the same directory."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        packs = open_blockstore(blocks) if blocks else LocalBlockStore(root / "packs")
        opened = open_catalog(catalog or root / "catalog.sqlite")
        try:
            return cls(opened, packs, config=config, clock=clock, lock_dir=root)
        except BaseException:
            opened.close()
            raise

    @property
    def context(self) -> StoreContext:
        return self._ctx

    def close(self) -> None:
        """Finish the pending rebases, encode the blocks stored raw that are left
        (``encode_deferred``), then release the store."""
        self._committer.close()
        self._ctx.pool.shutdown(wait=True, cancel_futures=True)
        self._ctx.catalog.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- write -----------------------------------------------------------------
    def put(
        self,
        job_id: str,
        source: Source,
        *,
        tenant: str = "",
        checkpoint_id: str | None = None,
        file_name: str | None = None,
        **fields: Unpack[CheckpointFields],
    ) -> CheckpointRecord:
        """Store ``source`` as a new checkpoint of ``job_id``; visible once this returns.

        ``source``: a file's path, bytes, a binary file or an iterable of bytes (one
        file, named ``file_name``, else the path's base name, else
        ``<checkpoint id>.ckpt``), or a folder's path: every file under it, with its
        relative path and permission bits (``files`` lists them, ``restore`` writes
        them back). ``fields``: type (automatic, best, manual, final), epoch, step,
        metrics, name, description. The job's policies (best copy, retention) run
        after the commit; the job's previous checkpoint is then re-encoded as deltas
        on this one in the background (``settle`` waits for that).
        """
        draft = new_draft(job_id, tenant, checkpoint_id, fields)
        return ingest(self._ctx, self._committer, draft, source, file_name)

    def create_pending(
        self, job_id: str, *, tenant: str = "", **fields: Unpack[CheckpointFields]
    ) -> CheckpointRecord:
        """Record a checkpoint whose data comes later (``fill`` or ``resume_upload``)."""
        fields.setdefault("type", "manual")
        draft = replace(
            new_draft(job_id, tenant, None, fields),
            status="pending",
            created_at=self._ctx.clock(),
        )
        self._ctx.catalog.create_checkpoint(draft)
        return draft

    def fill(
        self,
        checkpoint_id: str,
        source: Source,
        *,
        tenant: str = "",
        file_name: str | None = None,
        **fields: Unpack[ProgressFields],
    ) -> CheckpointRecord:
        """Upload the data of a pending checkpoint (a file or a folder, as ``put``),
        with the epoch, step and metrics of the training that fills it, if given."""
        draft = with_progress(self._pending(checkpoint_id, tenant), fields)
        return ingest(self._ctx, self._committer, draft, source, file_name)

    def begin_upload(
        self, job_id: str, *, tenant: str = "", **fields: Unpack[CheckpointFields]
    ) -> Upload:
        """A dedup-aware upload of a new checkpoint: ``missing`` -> ``put_block`` -> ``commit``."""
        draft = new_draft(job_id, tenant, None, fields)
        return Upload(self._ctx, new_upload_id(), draft, self._committer)

    def resume_upload(
        self, checkpoint_id: str, *, tenant: str = "", **fields: Unpack[ProgressFields]
    ) -> Upload:
        """The dedup-aware upload of a pending checkpoint; any request may resume it
        (the one that commits may give the epoch, step and metrics)."""
        pending = with_progress(self._pending(checkpoint_id, tenant), fields)
        return Upload(self._ctx, upload_holder(pending.checkpoint_id), pending, self._committer)

    def encode_deferred(self) -> None:
        """Encode whole, with the full codec, the tensor blocks that puts of this store
        stored raw (``StoreConfig.defer_whole_encode``) and no rebase has encoded yet:
        those of each job's newest checkpoint. ``close`` does it, and ``gc`` for
        checkpoints older than its grace time; a training run's last save is stored at
        its final size once this has run."""
        self._committer.encode_deferred()

    def settle(self) -> None:
        """Wait until every checkpoint committed so far has had its parent rebased
        (and an upload's files their SHA-256 computed).

        ``put`` returns once the checkpoint is durable and visible; storing its
        parent as deltas on it (rebase.py) then runs in the background, so a
        training loop waits only for its own save."""
        self._committer.settle()

    def _pending(self, checkpoint_id: str, tenant: str) -> CheckpointRecord:
        record = self.get(checkpoint_id, tenant=tenant)
        if record.status != "pending":
            raise CheckpointExists(checkpoint_id)
        return record

    # -- read ------------------------------------------------------------------
    def resolve(self, reference: str, *, tenant: str = "") -> str:
        """The id of the checkpoint ``reference`` names: an id, a unique prefix of one
        (``MIN_PREFIX_CHARS`` or longer), ``JOB:latest``, ``JOB:best`` or ``JOB:final``
        (``refs.py``). Every method that takes a checkpoint id takes a reference."""
        return resolve_reference(self._ctx.catalog, tenant, reference)

    def get(self, checkpoint_id: str, *, tenant: str = "") -> CheckpointRecord:
        """One checkpoint, by id or reference (``resolve``); CheckpointNotFound also when
        another tenant owns it."""
        record = self._ctx.catalog.get_checkpoint(self.resolve(checkpoint_id, tenant=tenant))
        if record.tenant_id != tenant:
            raise CheckpointNotFound(checkpoint_id)
        return record

    def list(
        self,
        job_id: str,
        *,
        sort_by: str = "createdAt",
        order: str = "desc",
        limit: int | None = 50,
        tenant: str = "",
        types: tuple[str, ...] | None = None,
        cursor: str | None = None,
    ) -> CheckpointPage:
        """A page of a job's checkpoints; those lacking the sort metric come last.
        ``cursor``: the ``next_cursor`` of the page before, with the same sort and
        filter (pages stay whole under inserts and deletes); ``limit=None``: all."""
        query = self._list_query(job_id, sort_by, order, limit, tenant, types, cursor)
        records, total, next_cursor = self._ctx.catalog.list_checkpoints(query)
        self._check_sort_key(query, records)
        return CheckpointPage(records, total, next_cursor)

    def listing(
        self,
        job_id: str,
        *,
        sort_by: str = "createdAt",
        order: str = "desc",
        limit: int | None = 50,
        tenant: str = "",
        types: tuple[str, ...] | None = None,
        cursor: str | None = None,
    ) -> tuple[CheckpointPage, JobSummary]:
        """``list`` and ``job_summary`` of the job in one read of the catalog (a list
        answer shows both)."""
        query = self._list_query(job_id, sort_by, order, limit, tenant, types, cursor)
        found = self._ctx.catalog.job_listing(query)
        self._check_sort_key(query, found.checkpoints)
        return (
            CheckpointPage(found.checkpoints, found.matching, found.next_cursor),
            JobSummary(found.best, found.latest, found.job_count, found.job_size_bytes),
        )

    def _list_query(
        self,
        job_id: str,
        sort_by: str,
        order: str,
        limit: int | None,
        tenant: str,
        types: tuple[str, ...] | None,
        cursor: str | None,
    ) -> ListQuery:
        """The catalog's query for a listing; raises for a bad argument."""
        check_list_arguments(job_id, order, limit, types)
        if not may_sort_by(sort_by):
            raise UnknownSortKey(sort_by, self._sort_keys(tenant, job_id))
        return ListQuery(tenant, job_id, sort_by, order == "desc", limit, types, cursor)

    def _check_sort_key(self, query: ListQuery, records: builtins.list[CheckpointRecord]) -> None:
        """Raise UnknownSortKey for a metric that no checkpoint of the job has."""
        sort_by = query.sort_by
        metric_sort = sort_by not in SORT_FIELDS and sort_by not in ALWAYS_SORTABLE_METRICS
        if metric_sort and records and all(sort_by not in r.metrics for r in records):
            # checkpoints lacking the key sort last, so none on the page has it: if no
            # checkpoint of the job has it either, it is a typo worth an error
            allowed = self._sort_keys(query.tenant_id, query.job_id)
            if sort_by not in allowed:
                raise UnknownSortKey(sort_by, allowed)

    def _sort_keys(self, tenant: str, job_id: str) -> builtins.list[str]:
        return sort_keys(self._ctx.catalog.metric_keys(tenant, job_id))

    def job_summary(self, job_id: str, *, tenant: str = "") -> JobSummary:
        """The job's best and latest checkpoints, how many it has and their total size."""
        best, latest = self._ctx.catalog.job_extremes(tenant, check_job_id(job_id))
        count, size = self._ctx.catalog.job_totals(tenant, job_id)
        return JobSummary(best, latest, count, size)

    def jobs(self, *, tenant: str = "") -> builtins.list[str]:
        return self._ctx.catalog.list_jobs(tenant)

    def job_settings(self, job_id: str, *, tenant: str = "") -> JobSettings:
        return job_settings(self._ctx, tenant, check_job_id(job_id))

    def set_job_settings(
        self, job_id: str, settings: JobSettings, *, tenant: str = ""
    ) -> JobSettings:
        self._ctx.catalog.set_job_settings(
            tenant, check_job_id(job_id), settings.as_dict(), self._ctx.clock()
        )
        return settings

    def files(self, checkpoint_id: str, *, tenant: str = "") -> builtins.list[FileRecord]:
        """The checkpoint's files in order: path (relative, ``/``-separated), offset in
        the checkpoint's bytes, size, permission bits and SHA-256 (None until known).
        A single-file checkpoint has one; one stored before folders existed reads as
        one file named ``<checkpoint id>.ckpt``."""
        record = self.get(checkpoint_id, tenant=tenant)
        return files_of(record, self._ctx.catalog.files(record.checkpoint_id))

    def open_reader(
        self, checkpoint_id: str, *, tenant: str = "", path: str | None = None
    ) -> CheckpointReader:
        """A seekable binary file of the checkpoint's bytes (verified as read); of a
        folder checkpoint, ``path`` names the file (``files`` lists them); of a
        single file, ``path`` may name that one file."""
        record = self._ready(checkpoint_id, tenant)
        if path is None and record.layout == "tree":
            raise InvalidArgument("path", None, "a file of the folder checkpoint (see files())")
        reader = self._whole_reader(record)
        if path is None:
            return reader
        found = find_file(files_of(record, self._ctx.catalog.files(record.checkpoint_id)), path)
        return reader.slice(found.offset, found.size_bytes)

    def open_archive(self, checkpoint_id: str, *, tenant: str = "") -> TarStream:
        """The checkpoint as one tar archive of its files (archive.py), any byte range
        of it readable without building it."""
        record = self._ready(checkpoint_id, tenant)
        files = files_of(record, self._ctx.catalog.files(record.checkpoint_id))
        return TarStream(self._whole_reader(record), files, record.created_at)

    def _ready(self, checkpoint_id: str, tenant: str) -> CheckpointRecord:
        record = self.get(checkpoint_id, tenant=tenant)
        if record.status != "ready":
            raise CheckpointNotReady(checkpoint_id)
        return record

    def _whole_reader(self, record: CheckpointRecord) -> CheckpointReader:
        """The checkpoint's bytes, every file end to end."""
        manifest = self._ctx.catalog.manifest(record.checkpoint_id)
        return CheckpointReader(self._ctx, manifest, record.size_bytes)

    def restore(
        self,
        checkpoint_id: str,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        tenant: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write the checkpoint's bytes; returns the byte count. A single file goes to
        ``dest`` (a path, or a binary file), or into ``dest`` under its own name when
        ``dest`` is a folder; a folder checkpoint's files go under the folder ``dest``
        (made if needed) with their permission bits."""
        record = self._ready(checkpoint_id, tenant)
        if record.layout == "tree":
            if not isinstance(dest, str | os.PathLike):
                raise InvalidArgument(
                    "dest", type(dest).__name__, "a folder for a folder checkpoint"
                )
            files = self._ctx.catalog.files(record.checkpoint_id)
            with self._whole_reader(record) as reader:
                return write_tree(reader, files, Path(dest), progress)
        with self._whole_reader(record) as reader:
            if isinstance(dest, str | os.PathLike):
                target = Path(dest)
                if target.is_dir():
                    target = target / self.files(record.checkpoint_id, tenant=tenant)[0].path
                with open(target, "wb") as out:
                    return _copy(reader, out, progress)
            return _copy(reader, dest, progress)

    # -- endpoints (records that pin a checkpoint) -------------------------------
    def deploy(
        self,
        checkpoint_id: str,
        *,
        name: str,
        gpu_ids: builtins.list[str],
        worker_count: int,
        tenant: str = "",
    ) -> EndpointRecord:
        """Record an endpoint serving ``checkpoint_id`` (a reference: the endpoint pins the
        checkpoint it names now); the checkpoint cannot be deleted meanwhile. Its name is
        the tenant's only one of that name (``EndpointNameTaken``)."""
        _check_worker_count(worker_count)
        record = EndpointRecord(
            endpoint_id=new_endpoint_id(),
            tenant_id=tenant,
            name=_check_endpoint_name(name),
            checkpoint_id=self.resolve(checkpoint_id, tenant=tenant),
            gpu_ids=list(gpu_ids),
            worker_count=worker_count,
            status="ready",
            created_at=self._ctx.clock(),
        )
        self._ctx.catalog.add_endpoint(record)
        return record

    def update_endpoint(
        self,
        endpoint_id: str,
        *,
        checkpoint_id: str | None = None,
        name: str | None = None,
        gpu_ids: builtins.list[str] | None = None,
        worker_count: int | None = None,
        tenant: str = "",
    ) -> EndpointRecord:
        """Change an endpoint; what is not given stays. A new ``checkpoint_id`` (a
        reference) re-points it: the endpoint pins that checkpoint and lets go of the old
        one, in one step, so a serving deployment never points at nothing."""
        current = self.endpoint(endpoint_id, tenant=tenant)
        if worker_count is not None:
            _check_worker_count(worker_count)
        record = replace(
            current,
            name=current.name if name is None else _check_endpoint_name(name),
            checkpoint_id=(
                current.checkpoint_id
                if checkpoint_id is None
                else self.resolve(checkpoint_id, tenant=tenant)
            ),
            gpu_ids=current.gpu_ids if gpu_ids is None else list(gpu_ids),
            worker_count=current.worker_count if worker_count is None else worker_count,
        )
        self._ctx.catalog.update_endpoint(record)
        return record

    def endpoint(self, endpoint_id: str, *, tenant: str = "") -> EndpointRecord:
        record = self._ctx.catalog.get_endpoint(endpoint_id)
        if record is None or record.tenant_id != tenant:
            raise EndpointNotFound(endpoint_id)
        return record

    def endpoints(self, *, tenant: str = "") -> builtins.list[EndpointRecord]:
        return self._ctx.catalog.list_endpoints(tenant)

    def undeploy(self, endpoint_id: str, *, tenant: str = "") -> None:
        self._ctx.catalog.delete_endpoint(self.endpoint(endpoint_id, tenant=tenant).endpoint_id)

    # -- delete, gc, verify, stats ----------------------------------------------
    def delete(self, checkpoint_id: str, *, tenant: str = "") -> CheckpointRecord:
        """Remove a checkpoint; its unshared blocks become garbage for ``gc``."""
        record = self.get(checkpoint_id, tenant=tenant)
        return self._ctx.catalog.delete_checkpoint(record.checkpoint_id, self._ctx.clock())

    def gc(self, *, grace_s: float | None = None) -> GcReport:
        """Reclaim dead blocks and compact packs; one GC at a time per store. Also takes
        up, once the pass is done, the rebases another process left undone (their claim
        lapsed), and encodes whole the tensor blocks still stored raw of checkpoints
        committed longer than the grace ago, whichever process stored them
        (``encode_deferred``). ``grace_s``: how long a block must have been dead to go,
        this time only (default: ``StoreConfig.gc_grace_s``; 0 reclaims at once)."""
        report = self._gc_lock.run(lambda: collect_garbage(self._ctx, grace_s), wait=True)
        assert report is not None
        self._committer.resume()
        grace = self._ctx.config.gc_grace_s if grace_s is None else grace_s
        self._committer.encode_deferred(committed_before=self._ctx.clock() - grace)
        return report

    def verify(self, *, read_data: bool = False) -> VerifyReport:
        return verify_store(self._ctx, read_data)

    def tenant_usage(self, tenant: str) -> StoreStats:
        """A tenant's checkpoints: logical bytes, and the bytes their uploads added."""
        count, logical, added = self._ctx.catalog.tenant_totals(tenant)
        return StoreStats(count, logical, 0, added, 0, 0)

    def stats(self) -> StoreStats:
        s = self._ctx.catalog.stats()
        return StoreStats(
            s.checkpoints,
            s.logical_bytes,
            s.unique_raw_bytes,
            s.stored_bytes,
            s.blocks,
            s.packs,
            s.pending_rebases,
        )


def _check_worker_count(worker_count: int) -> None:
    if isinstance(worker_count, bool) or not isinstance(worker_count, int) or worker_count < 1:
        raise InvalidArgument("workerCount", worker_count, "a positive integer")


def _check_endpoint_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_ENDPOINT_NAME:
        raise InvalidArgument("name", name, f"1-{MAX_ENDPOINT_NAME} characters, not all blank")
    return name


def _copy(
    reader: CheckpointReader, out: BinaryIO, progress: Callable[[int], None] | None = None
) -> int:
    total = 0
    for view in reader.iter_range():
        out.write(view)
        total += len(view)
        if progress is not None:
            progress(len(view))
    return total


__all__ = [
    "FORMAT_VERSION",
    "CheckpointFields",
    "CheckpointPage",
    "CheckpointStore",
    "JobSummary",
    "StoreStats",
]
