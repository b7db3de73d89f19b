"""The server's background GC stops cleanly, never closing the store under a running GC."""

from __future__ import annotations

import asyncio
import threading
import time

from ckptstore.server.gc_worker import GcWorker


class SlowStore:
    """Stands in for CheckpointStore.gc: records whether a GC was still running at close."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.finished = 0

    def gc(self):
        self.running.set()
        time.sleep(0.3)
        self.finished += 1
        self.running.clear()
        return None


def test_stop_waits_for_a_gc_in_progress():
    store = SlowStore()

    async def scenario() -> None:
        worker = GcWorker(store, interval_s=3600, after_delete_s=0)  # type: ignore[arg-type]
        worker.start()
        worker.after_delete()
        while not store.running.is_set():
            await asyncio.sleep(0.01)
        await worker.stop()
        assert not store.running.is_set() and store.finished == 1

    asyncio.run(scenario())


def test_stop_without_any_gc_returns_at_once():
    store = SlowStore()

    async def scenario() -> None:
        worker = GcWorker(store, interval_s=3600, after_delete_s=5)  # type: ignore[arg-type]
        worker.start()
        worker.after_delete()  # a delete asked for GC, but we stop during the pause
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await worker.stop()
        assert time.monotonic() - started < 1 and store.finished == 0

    asyncio.run(scenario())
