"""Admission of uploads, so that one tenant cannot slow down or starve the others.

An upload request (``PUT .../data``, ``PUT .../blocks``, ``POST .../commit``)
takes one of its tenant's slots for as long as it runs; a tenant with all its
slots taken gets 429 at once. Upload work runs on threads of its own, fewer
than the server's shared pool, so reads, lists and ``/healthz`` always find a
thread. A body that stops arriving is cut after ``read_timeout_s`` (408)
instead of holding a slot and a thread for ever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import anyio.to_thread

from ckptstore.server.errors import ApiError

T = TypeVar("T")


class TooManyUploads(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            429,
            "too_many_uploads",
            f"this tenant already has {limit} uploads running; retry when one ends",
            {"Retry-After": "1"},
        )


class BodyTimeout(ApiError):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, "body_timeout", f"no request body arrived for {timeout_s:g} s")


class UploadAdmission:
    """Per-tenant upload slots, the upload threads, and the body read timeout."""

    def __init__(self, per_tenant: int, threads: int, read_timeout_s: float) -> None:
        self.per_tenant = per_tenant
        self.read_timeout_s = read_timeout_s
        self._threads = anyio.CapacityLimiter(threads)
        self._running: Counter[str] = Counter()

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """One of ``tenant``'s upload slots for the block; TooManyUploads if none is free."""
        if self._running[tenant] >= self.per_tenant:
            raise TooManyUploads(self.per_tenant)
        self._running[tenant] += 1
        try:
            yield
        finally:
            self._running[tenant] -= 1
            if not self._running[tenant]:
                del self._running[tenant]

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` on one of the upload threads."""
        return await anyio.to_thread.run_sync(work, limiter=self._threads)

    async def next_chunk(self, stream: AsyncIterator[bytes]) -> bytes | None:
        """The body's next chunk (None at its end); BodyTimeout if none comes in time."""
        try:
            with anyio.fail_after(self.read_timeout_s):
                return await stream.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise BodyTimeout(self.read_timeout_s) from None
