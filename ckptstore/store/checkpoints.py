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

import fcntl
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TypedDict, Unpack

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CheckpointNotReady,
    EndpointNotFound,
    FormatError,
    InvalidArgument,
    InvalidCheckpointType,
    InvalidLimit,
    UnknownSortKey,
)
from ckptstore.store.blockstore import BlockStore, LocalBlockStore
from ckptstore.store.catalog import (
    CHECKPOINT_TYPES,
    Catalog,
    CheckpointRecord,
    ListQuery,
    SQLiteCatalog,
)
from ckptstore.store.catalog.base import EndpointRecord
from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.chunking.sources import Source, open_source
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.context import Clock, StoreConfig, StoreContext
from ckptstore.store.gc import GcReport, collect_garbage, compact_packs
from ckptstore.store.ids import (
    check_checkpoint_id,
    check_job_id,
    new_checkpoint_id,
    new_endpoint_id,
    new_upload_id,
)
from ckptstore.store.ingest import Ingest
from ckptstore.store.packs.basecache import BaseCache
from ckptstore.store.policies import JobSettings, apply_policies, job_settings
from ckptstore.store.rebase import rebase_parent
from ckptstore.store.restore import CheckpointReader
from ckptstore.store.uploads import Upload
from ckptstore.store.verify import VerifyReport, verify_store

log = logging.getLogger("ckptstore.store")

FORMAT_VERSION = 1
MAX_LIST_LIMIT = 10_000
SORT_FIELDS = ("createdAt", "epoch", "step")
ALWAYS_SORTABLE_METRICS = ("loss", "accuracy")
_METRIC_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]{0,127}")


class CheckpointFields(TypedDict, total=False):
    """The metadata a caller may give a checkpoint."""

    type: str  # automatic | best | manual | final
    epoch: int | None
    step: int | None
    metrics: dict[str, float] | None
    name: str | None
    description: str | None


_DEFAULT_NAMES = {
    "automatic": "Automatic Checkpoint",
    "best": "Best Checkpoint",
    "manual": "Manual Checkpoint",
    "final": "Final Checkpoint",
}


@dataclass(frozen=True)
class CheckpointPage:
    checkpoints: list[CheckpointRecord]
    total_count: int  # all of the job's checkpoints, not only this page


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
        config = config or StoreConfig()
        chunker = _persisted_chunker(catalog, config.chunker)
        self._ctx = StoreContext(
            catalog=catalog,
            blocks=blocks,
            codec=BlockCodec(
                config.zstd_level,
                config.byte_planes,
                config.delta_group_log,
                config.exponent_group_log,
            ),
            chunker=chunker,
            clock=clock,
            pool=ThreadPoolExecutor(config.workers, thread_name_prefix="ckptstore"),
            config=config,
            base_cache=BaseCache(config.delta_cache_bytes),
        )
        self._lock_dir = lock_dir
        # one rebase at a time, in commit order: each sees the chains the last one made;
        # those a crash cut short run again first
        self._rebaser = ThreadPoolExecutor(1, thread_name_prefix="ckptstore-rebase")
        for checkpoint_id, parent_id in catalog.pending_rebases():
            self._rebaser.submit(self._rebase, checkpoint_id, parent_id, {})

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        config: StoreConfig | None = None,
        clock: Clock = time.time,
    ) -> CheckpointStore:
        """A store in a local directory: ``catalog.sqlite`` beside ``packs/``."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        catalog = SQLiteCatalog(root / "catalog.sqlite")
        return cls(
            catalog, LocalBlockStore(root / "packs"), config=config, clock=clock, lock_dir=root
        )

    @property
    def context(self) -> StoreContext:
        return self._ctx

    def close(self) -> None:
        """Finish the pending rebases, then release the store."""
        self._rebaser.shutdown(wait=True)
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
        **fields: Unpack[CheckpointFields],
    ) -> CheckpointRecord:
        """Store ``source`` as a new checkpoint of ``job_id``; visible once this returns.

        ``fields``: type (automatic, best, manual, final), epoch, step, metrics, name,
        description. The job's policies (best copy, retention) run after the commit;
        the job's previous checkpoint is then re-encoded as deltas on this one in the
        background (``settle`` waits for that).
        """
        return self._ingest(self._draft(job_id, tenant, checkpoint_id, fields), source)

    def create_pending(
        self, job_id: str, *, tenant: str = "", **fields: Unpack[CheckpointFields]
    ) -> CheckpointRecord:
        """Record a checkpoint whose data comes later (``fill`` or ``resume_upload``)."""
        fields.setdefault("type", "manual")
        draft = replace(
            self._draft(job_id, tenant, None, fields),
            status="pending",
            created_at=self._ctx.clock(),
        )
        self._ctx.catalog.create_checkpoint(draft)
        return draft

    def fill(self, checkpoint_id: str, source: Source, *, tenant: str = "") -> CheckpointRecord:
        """Upload the data of a pending checkpoint."""
        return self._ingest(self._pending(checkpoint_id, tenant), source)

    def begin_upload(
        self, job_id: str, *, tenant: str = "", **fields: Unpack[CheckpointFields]
    ) -> Upload:
        """A dedup-aware upload of a new checkpoint: ``missing`` -> ``put_block`` -> ``commit``."""
        draft = self._draft(job_id, tenant, None, fields)
        return self._upload(draft, new_upload_id())

    def resume_upload(self, checkpoint_id: str, *, tenant: str = "") -> Upload:
        """The dedup-aware upload of a pending checkpoint; any request may resume it."""
        pending = self._pending(checkpoint_id, tenant)
        return self._upload(pending, f"upl_{pending.checkpoint_id}")

    def _upload(self, draft: CheckpointRecord, upload_id: str) -> Upload:
        def commit(
            manifest: list[tuple[int, bytes]],
            size: int,
            stored: int,
            slots: list[str | None] | None,
            widths: dict[bytes, int],
        ) -> CheckpointRecord:
            return self._commit(draft, manifest, size, stored, upload_id, slots, widths)

        return Upload(self._ctx, upload_id, draft.tenant_id, commit)

    def _ingest(self, draft: CheckpointRecord, source: Source) -> CheckpointRecord:
        holder = new_upload_id()
        windows = open_source(source, self._ctx.config.window_bytes)
        try:
            result = Ingest(self._ctx, holder).run(windows)
            return self._commit(
                draft,
                result.manifest,
                result.size_bytes,
                result.stored_bytes,
                holder,
                result.slots,
                result.widths,
            )
        except BaseException:
            self._ctx.catalog.release_leases(holder)
            raise
        finally:
            windows.close()

    def _commit(
        self,
        draft: CheckpointRecord,
        manifest: list[tuple[int, bytes]],
        size: int,
        stored: int,
        holder: str,
        slots: list[str | None] | None = None,
        widths: dict[bytes, int] | None = None,
    ) -> CheckpointRecord:
        record = replace(
            draft,
            status="ready",
            size_bytes=size,
            stored_bytes=stored,
            created_at=draft.created_at or self._ctx.clock(),
        )
        parent_id = self._ctx.catalog.commit_checkpoint(record, manifest, holder, slots)
        apply_policies(self._ctx, record)
        if parent_id is not None:
            self._rebaser.submit(self._rebase, record.checkpoint_id, parent_id, widths or {})
        return record

    def settle(self) -> None:
        """Wait until every checkpoint committed so far has had its parent rebased.

        ``put`` returns once the checkpoint is durable and visible; storing its
        parent as deltas on it (rebase.py) then runs in the background, so a
        training loop waits only for its own save."""
        self._rebaser.submit(lambda: None).result()

    def _rebase(self, checkpoint_id: str, parent_id: str, widths: dict[bytes, int]) -> None:
        """Store the parent checkpoint as deltas on ``checkpoint_id``, compact the packs
        that held its whole blocks, and forget the pending rebase. The commit stands
        whatever happens here: a failure leaves the parent whole, is logged, and is
        tried again when the store is next opened."""
        catalog = self._ctx.catalog
        try:
            parent, child = catalog.slots(parent_id), catalog.slots(checkpoint_id)
        except CheckpointNotFound:  # deleted since; the catalog dropped the pending row
            return
        try:
            report = rebase_parent(self._ctx, parent, child, widths, parent_id)
            if report.packs_emptied:
                self._locked_gc(lambda: compact_packs(self._ctx, report.packs_emptied), wait=False)
            catalog.finish_rebase(checkpoint_id)
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("rebasing checkpoint %s onto %s failed", parent_id, checkpoint_id)

    def _pending(self, checkpoint_id: str, tenant: str) -> CheckpointRecord:
        record = self.get(checkpoint_id, tenant=tenant)
        if record.status != "pending":
            raise CheckpointExists(checkpoint_id)
        return record

    def _draft(
        self,
        job_id: str,
        tenant: str,
        checkpoint_id: str | None,
        fields: CheckpointFields,
    ) -> CheckpointRecord:
        check_job_id(job_id)
        unknown = set(fields) - set(CheckpointFields.__annotations__)
        if unknown:
            raise InvalidArgument(
                "field", sorted(unknown)[0], ", ".join(CheckpointFields.__annotations__)
            )
        type_ = fields.get("type", "automatic")
        if type_ not in CHECKPOINT_TYPES:
            raise InvalidCheckpointType(type_, CHECKPOINT_TYPES)
        epoch, step = fields.get("epoch"), fields.get("step")
        for label, value in (("epoch", epoch), ("step", step)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise InvalidArgument(label, value, "a non-negative integer")
        name = fields.get("name")
        if name is None:
            automatic = type_ == "automatic" and epoch is not None
            name = f"Epoch {epoch} Checkpoint" if automatic else _DEFAULT_NAMES[type_]
        return CheckpointRecord(
            checkpoint_id=check_checkpoint_id(checkpoint_id)
            if checkpoint_id
            else new_checkpoint_id(),
            job_id=job_id,
            type=type_,
            name=name,
            description=fields.get("description"),
            epoch=epoch,
            step=step,
            metrics=_check_metrics(fields.get("metrics") or {}),
            status="ready",
            size_bytes=0,
            stored_bytes=0,
            created_at=0.0,
            tenant_id=tenant,
        )

    # -- read ------------------------------------------------------------------
    def get(self, checkpoint_id: str, *, tenant: str = "") -> CheckpointRecord:
        """One checkpoint; CheckpointNotFound also when another tenant owns it."""
        record = self._ctx.catalog.get_checkpoint(check_checkpoint_id(checkpoint_id))
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
    ) -> CheckpointPage:
        """A page of a job's checkpoints; those lacking the sort metric come last."""
        check_job_id(job_id)
        if order not in ("asc", "desc"):
            raise InvalidArgument("sortOrder", order, "asc or desc")
        if limit is not None and (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= MAX_LIST_LIMIT
        ):
            raise InvalidLimit(limit, 1, MAX_LIST_LIMIT)
        for type_ in types or ():
            if type_ not in CHECKPOINT_TYPES:
                raise InvalidCheckpointType(type_, CHECKPOINT_TYPES)
        if sort_by not in SORT_FIELDS and not _METRIC_KEY.fullmatch(sort_by):
            raise UnknownSortKey(sort_by, self._sort_keys(tenant, job_id))
        records, total = self._ctx.catalog.list_checkpoints(
            ListQuery(tenant, job_id, sort_by, order == "desc", limit, types)
        )
        metric_sort = sort_by not in SORT_FIELDS and sort_by not in ALWAYS_SORTABLE_METRICS
        if metric_sort and records and all(sort_by not in r.metrics for r in records):
            # checkpoints lacking the key sort last, so none on the page has it: if no
            # checkpoint of the job has it either, it is a typo worth an error
            allowed = self._sort_keys(tenant, job_id)
            if sort_by not in allowed:
                raise UnknownSortKey(sort_by, allowed)
        return CheckpointPage(records, total)

    def _sort_keys(self, tenant: str, job_id: str) -> list[str]:
        known = self._ctx.catalog.metric_keys(tenant, job_id)
        return sorted(set(SORT_FIELDS) | set(ALWAYS_SORTABLE_METRICS) | set(known))

    def job_summary(self, job_id: str, *, tenant: str = "") -> JobSummary:
        """The job's best and latest checkpoints, how many it has and their total size."""
        best, latest = self._ctx.catalog.job_extremes(tenant, check_job_id(job_id))
        count, size = self._ctx.catalog.job_totals(tenant, job_id)
        return JobSummary(best, latest, count, size)

    def jobs(self, *, tenant: str = "") -> list[str]:
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

    def open_reader(self, checkpoint_id: str, *, tenant: str = "") -> CheckpointReader:
        """A seekable binary file of the checkpoint's bytes (verified as read)."""
        record = self.get(checkpoint_id, tenant=tenant)
        if record.status != "ready":
            raise CheckpointNotReady(checkpoint_id)
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
        """Write the checkpoint's bytes to a path or binary file; returns the byte count."""
        with self.open_reader(checkpoint_id, tenant=tenant) as reader:
            if isinstance(dest, str | os.PathLike):
                with open(dest, "wb") as out:
                    return _copy(reader, out, progress)
            return _copy(reader, dest, progress)

    # -- endpoints (records that pin a checkpoint) -------------------------------
    def deploy(
        self,
        checkpoint_id: str,
        *,
        name: str,
        gpu_ids: list[str],
        worker_count: int,
        tenant: str = "",
    ) -> EndpointRecord:
        """Record an endpoint serving ``checkpoint_id``; the checkpoint is pinned meanwhile."""
        if isinstance(worker_count, bool) or not isinstance(worker_count, int) or worker_count < 1:
            raise InvalidArgument("workerCount", worker_count, "a positive integer")
        record = EndpointRecord(
            endpoint_id=new_endpoint_id(),
            tenant_id=tenant,
            name=name,
            checkpoint_id=check_checkpoint_id(checkpoint_id),
            gpu_ids=list(gpu_ids),
            worker_count=worker_count,
            status="ready",
            created_at=self._ctx.clock(),
        )
        self._ctx.catalog.add_endpoint(record)
        return record

    def endpoint(self, endpoint_id: str, *, tenant: str = "") -> EndpointRecord:
        record = self._ctx.catalog.get_endpoint(endpoint_id)
        if record is None or record.tenant_id != tenant:
            raise EndpointNotFound(endpoint_id)
        return record

    def endpoints(self, *, tenant: str = "") -> list[EndpointRecord]:
        return self._ctx.catalog.list_endpoints(tenant)

    def undeploy(self, endpoint_id: str, *, tenant: str = "") -> None:
        self._ctx.catalog.delete_endpoint(self.endpoint(endpoint_id, tenant=tenant).endpoint_id)

    # -- delete, gc, verify, stats ----------------------------------------------
    def delete(self, checkpoint_id: str, *, tenant: str = "") -> CheckpointRecord:
        """Remove a checkpoint; its unshared blocks become garbage for ``gc``."""
        record = self.get(checkpoint_id, tenant=tenant)
        return self._ctx.catalog.delete_checkpoint(record.checkpoint_id, self._ctx.clock())

    def gc(self) -> GcReport:
        """Reclaim dead blocks and compact packs; one GC at a time per store."""
        report = self._locked_gc(lambda: collect_garbage(self._ctx), wait=True)
        assert report is not None
        return report

    def _locked_gc(self, run: Callable[[], GcReport], *, wait: bool) -> GcReport | None:
        """``run`` holding the store's GC lock; None if ``wait`` is False and a GC holds it."""
        if self._lock_dir is None:
            return run()
        with open(self._lock_dir / "gc.lock", "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return None  # the running GC compacts these packs too
            try:
                return run()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

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


def _persisted_chunker(catalog: Catalog, for_new_store: ChunkerParams) -> ChunkerParams:
    """The store's chunker parameters: recorded at creation, never changed after."""
    version = int(catalog.set_setting_if_absent("format_version", str(FORMAT_VERSION)))
    if version != FORMAT_VERSION:
        raise FormatError(f"store format version {version}; this ckptstore reads {FORMAT_VERSION}")
    stored = json.loads(
        catalog.set_setting_if_absent("chunker", json.dumps(for_new_store.as_dict()))
    )
    try:
        return ChunkerParams.from_dict(stored)
    except (ValueError, KeyError) as exc:
        raise FormatError(f"store chunker settings {stored}: {exc}") from None


def _check_metrics(metrics: dict[str, float]) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise InvalidArgument("metrics", metrics, "a mapping of metric name to number")
    for key, value in metrics.items():
        if not isinstance(key, str) or not _METRIC_KEY.fullmatch(key):
            raise InvalidArgument("metrics", key, "metric names of letters, digits, _ . - /")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidArgument(f"metrics.{key}", value, "a finite number")
    return {key: float(value) for key, value in metrics.items()}


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


__all__ = ["CheckpointPage", "CheckpointStore", "StoreStats"]
