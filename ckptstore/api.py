"""``CheckpointAPI``: what an embedded ``CheckpointStore`` and a remote ``Client`` both offer.

The same method names, parameters, return types (the store's records) and
exceptions (``ckptstore.errors``), so code written against this Protocol runs
on either; ``tests/test_api_contract.py`` runs one suite against both.

Left out, because only one side has them: the store's ``tenant=`` keyword (a
client's tenant is its API key), ``verify`` (it reads pack files, so it runs
where the store is), ``settle`` and ``context``; ``stats``, because the store's
figures (blocks, packs, unique bytes) are of the whole store, which the server
does not show one tenant (its ``Client.stats`` gives that tenant's usage); the
client's ``download_url``, ``info`` and upload ``progress``.

A difference of limits, not of behaviour: a server answers at most 100
checkpoints per ``list`` (the seed API's limit), the store up to 10,000.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from typing import BinaryIO, Protocol, Unpack

from ckptstore.store.catalog.base import CheckpointRecord, EndpointRecord, FileRecord
from ckptstore.store.checkpoints import CheckpointFields, CheckpointPage, JobSummary
from ckptstore.store.chunking.sources import Source
from ckptstore.store.drafts import ProgressFields
from ckptstore.store.gc import GcReport
from ckptstore.store.policies import JobSettings
from ckptstore.store.restore import SeekableReader


class CheckpointAPI(Protocol):
    """Checkpoints of training jobs, stored here or on a server."""

    def close(self) -> None: ...

    # -- write
    def put(
        self, job_id: str, source: Source, **fields: Unpack[CheckpointFields]
    ) -> CheckpointRecord:
        """Store ``source`` as a new, ready checkpoint of ``job_id``."""
        ...

    def create_pending(self, job_id: str, **fields: Unpack[CheckpointFields]) -> CheckpointRecord:
        """Record a checkpoint whose data comes later (``fill``)."""
        ...

    def fill(
        self, checkpoint_id: str, source: Source, **fields: Unpack[ProgressFields]
    ) -> CheckpointRecord:
        """Store the data of a pending checkpoint, with the epoch, step and metrics of
        the training that fills it, if given; ``CheckpointExists`` if it has some."""
        ...

    # -- read
    # Every ``checkpoint_id`` parameter takes a reference (``store/refs.py``): the id, a
    # unique prefix of it (8 characters or more), ``JOB:latest``, ``JOB:best`` or
    # ``JOB:final``. Records always carry the full id.
    def resolve(self, reference: str) -> str:
        """The id of the checkpoint ``reference`` names; ``CheckpointNotFound``,
        ``AmbiguousCheckpointId`` or ``UnknownAlias`` if it names none."""
        ...

    def get(self, checkpoint_id: str) -> CheckpointRecord:
        """One checkpoint; ``CheckpointNotFound`` if there is none (for this tenant)."""
        ...

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
        """A page of a job's checkpoints, sorted; those lacking the sort metric come last.
        ``cursor``: the ``next_cursor`` of the page before; ``limit=None``: all."""
        ...

    def job_summary(self, job_id: str) -> JobSummary: ...

    def jobs(self) -> builtins.list[str]: ...

    def files(self, checkpoint_id: str) -> builtins.list[FileRecord]:
        """The checkpoint's files in order: one, or a folder's (path, size, mode, sha256)."""
        ...

    def open_reader(self, checkpoint_id: str, *, path: str | None = None) -> SeekableReader:
        """A seekable binary file of the checkpoint, or with ``path`` of one of its files
        (a folder checkpoint needs one); ``CheckpointNotReady`` if pending."""
        ...

    def restore(
        self,
        checkpoint_id: str,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write the checkpoint's bytes to a path or binary file, or into a folder (a
        folder checkpoint's files under their paths); returns the byte count."""
        ...

    # -- job settings
    def job_settings(self, job_id: str) -> JobSettings: ...

    def set_job_settings(self, job_id: str, settings: JobSettings) -> JobSettings: ...

    # -- endpoints: records that pin a checkpoint
    def deploy(
        self, checkpoint_id: str, *, name: str, gpu_ids: builtins.list[str], worker_count: int
    ) -> EndpointRecord: ...

    def update_endpoint(
        self,
        endpoint_id: str,
        *,
        checkpoint_id: str | None = None,
        name: str | None = None,
        gpu_ids: builtins.list[str] | None = None,
        worker_count: int | None = None,
    ) -> EndpointRecord:
        """Change an endpoint (what is not given stays); a new checkpoint re-points it.
        ``EndpointNameTaken`` if another endpoint of the tenant has the name."""
        ...

    def endpoint(self, endpoint_id: str) -> EndpointRecord: ...

    def endpoints(self) -> builtins.list[EndpointRecord]: ...

    def undeploy(self, endpoint_id: str) -> None: ...

    # -- delete, gc
    def delete(self, checkpoint_id: str) -> CheckpointRecord:
        """Remove a checkpoint (``CheckpointPinned`` while an endpoint serves it)."""
        ...

    def gc(self, *, grace_s: float | None = None) -> GcReport:
        """Reclaim the space of deleted checkpoints now; ``grace_s``: how long a block must
        have been unused to go, this run only (default: the store's grace period)."""
        ...


__all__ = ["CheckpointAPI"]
