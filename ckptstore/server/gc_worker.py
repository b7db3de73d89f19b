"""Background GC: soon after deletes (debounced) and every ``interval_s`` regardless.

The periodic run matters because deleted blocks are only reclaimed after the
grace period: a GC right after a delete frees little, a later one the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from starlette.concurrency import run_in_threadpool

from ckptstore.store.checkpoints import CheckpointStore
from ckptstore.store.gc import GcReport

log = logging.getLogger("ckptstore.gc")


class GcWorker:
    """Runs GC in a worker thread; stopping waits for a run in progress to finish.

    It is never cancelled mid-run: cancelling the awaiting task would leave the
    thread running against a store the app then closes under it.
    """

    def __init__(self, store: CheckpointStore, interval_s: float, after_delete_s: float) -> None:
        self._store = store
        self._interval_s = interval_s
        self._after_delete_s = after_delete_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.runs = 0
        self.last_report: GcReport | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop and wait until no GC is running."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        async with self._lock:  # a run started by a request (POST /v2/gc) finishes too
            pass

    def after_delete(self) -> None:
        """Ask for a GC soon; several deletes in a row share one run."""
        self._wake.set()

    async def run_now(self, grace_s: float | None = None) -> GcReport:
        """One GC now (after a run in progress); ``grace_s`` for this run only."""
        async with self._lock:
            gc = self._store.gc
            run = gc if grace_s is None else functools.partial(gc, grace_s=grace_s)
            report = await asyncio.shield(run_in_threadpool(run))
            self.runs += 1
            self.last_report = report
            log.info(
                "GC: %d blocks and %d packs removed, %d packs compacted, %d bytes freed",
                report.blocks_removed,
                report.packs_deleted + report.orphan_packs_deleted,
                report.packs_compacted,
                report.bytes_freed,
            )
            return report

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
            if self._stopping.is_set():
                return
            if self._wake.is_set():
                await self._pause(self._after_delete_s)  # let a burst of deletes finish
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                await self.run_now()
            except Exception:  # noqa: BLE001 - keep the worker alive; the next run retries
                log.exception("background GC failed")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
