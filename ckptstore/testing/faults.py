"""A BlockStore that fails on purpose: I/O errors at chosen calls, for reliability tests.

::

    blocks = FaultyBlockStore(LocalBlockStore(root / "packs"))
    store = CheckpointStore(catalog, blocks, ...)
    blocks.arm(Fault("commit", call=2, errno=errno.ENOSPC))  # the 2nd pack commit fails
    with pytest.raises(OSError): store.put("job", data)
    blocks.disarm()                                          # the disk works again

Every call is forwarded to the wrapped store, except the ones a rule picks,
which raise ``OSError(errno, ...)`` instead (``when="before"``, the wrapped
call is not made) or after the wrapped call returned (``when="after"``: the
work was done, as when a disk reports an error late). Calls are counted per
method from the last ``arm``, on every thread, in the order they happen:
``PendingObject.write``, ``commit`` and ``abort`` (of every object ``begin``
returned) are counted as ``"write"``, ``"commit"`` and ``"abort"``. A test whose
code under test calls the store in a deterministic order therefore fails it
at the same place on every run.

Shipped with the package, so that a test of any backend can wrap it.
"""

from __future__ import annotations

import errno as errnos
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ckptstore.store.blockstore.base import BlockStore, ObjectInfo, PendingObject

T = TypeVar("T")
METHODS = ("put", "begin", "get", "delete", "list", "sweep_incomplete", "write", "commit", "abort")


@dataclass(frozen=True)
class Fault:
    """The ``call``-th call (1-based) of ``method`` raises ``OSError(errno)``; with
    ``every``, so does each later call of it. ``when``: "before" the wrapped call
    (it is not made) or "after" it (it was made, and its result is lost)."""

    method: str
    call: int = 1
    errno: int = errnos.EIO
    every: bool = False
    when: str = "before"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.call < 1:
            raise ValueError(f"call {self.call}: calls are counted from 1")
        if self.when not in ("before", "after"):
            raise ValueError(f"when {self.when!r}: expected 'before' or 'after'")

    def fires(self, method: str, call: int) -> bool:
        """Whether the ``call``-th call of ``method`` fails under this rule."""
        if method != self.method:
            return False
        return call >= self.call if self.every else call == self.call


@dataclass(frozen=True)
class Injected:
    """One error a FaultyBlockStore raised."""

    method: str
    call: int
    errno: int
    name: str | None  # the object it concerned (None for list and sweep_incomplete)


class FaultyBlockStore(BlockStore):
    """Forwards to ``inner`` and raises ``OSError`` where the armed faults say.

    ``calls`` counts each method's calls since the last ``arm``; ``injected``
    lists the errors raised, in order. Safe to use from several threads.
    """

    def __init__(self, inner: BlockStore, *faults: Fault) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._faults: tuple[Fault, ...] = ()
        self.calls: Counter[str] = Counter()
        self.injected: list[Injected] = []
        self.arm(*faults)

    def arm(self, *faults: Fault) -> None:
        """Replace the faults by ``faults`` and count calls from zero again."""
        with self._lock:
            self._faults = faults
            self.calls = Counter()

    def disarm(self) -> None:
        """No more faults: every call is forwarded (the counts go on)."""
        with self._lock:
            self._faults = ()

    def _count(self, method: str) -> tuple[Fault | None, int]:
        """Count one call of ``method``: the fault it must raise, if any, and its number."""
        with self._lock:
            self.calls[method] += 1
            call = self.calls[method]
            return next((f for f in self._faults if f.fires(method, call)), None), call

    def _raise(self, fault: Fault, call: int, name: str | None) -> None:
        with self._lock:
            self.injected.append(Injected(fault.method, call, fault.errno, name))
        message = f"{os.strerror(fault.errno)} (injected at {fault.method} call {call})"
        raise OSError(fault.errno, message, name)

    def call(self, method: str, name: str | None, run: Callable[[], T]) -> T:
        """Count a call of ``method`` (on object ``name``) and run it, failing it where a
        fault says. For the objects ``begin`` returns; tests need not call it."""
        fault, call = self._count(method)
        if fault is not None and fault.when == "before":
            self._raise(fault, call, name)
        result = run()
        if fault is not None:
            self._raise(fault, call, name)
        return result

    # -- BlockStore ------------------------------------------------------------------
    def put(self, name: str, data: bytes | memoryview) -> None:
        self.call("put", name, lambda: self.inner.put(name, data))

    def begin(self, name: str) -> PendingObject:
        pending = self.call("begin", name, lambda: self.inner.begin(name))
        return _FaultyPending(self, name, pending)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.call("get", name, lambda: self.inner.get(name, offset, length))

    def delete(self, name: str) -> None:
        self.call("delete", name, lambda: self.inner.delete(name))

    def list(self) -> Iterator[ObjectInfo]:
        # listed at the call, so that the fault (and the count) belongs to the call
        return iter(self.call("list", None, lambda: [*self.inner.list()]))

    def sweep_incomplete(self, older_than: float) -> int:
        return self.call("sweep_incomplete", None, lambda: self.inner.sweep_incomplete(older_than))


class _FaultyPending(PendingObject):
    """A pending object of the wrapped store whose calls count, and fail, like the
    store's own."""

    def __init__(self, store: FaultyBlockStore, name: str, inner: PendingObject) -> None:
        self._store = store
        self._name = name
        self._inner = inner

    def write(self, *parts: bytes | memoryview) -> None:
        self._store.call("write", self._name, lambda: self._inner.write(*parts))

    def commit(self) -> None:
        self._store.call("commit", self._name, self._inner.commit)

    def abort(self) -> None:
        self._store.call("abort", self._name, self._inner.abort)
