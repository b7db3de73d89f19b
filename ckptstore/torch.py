"""torch objects straight into a store or a server, and back: no temporary file.

``save`` runs ``torch.save`` on a helper thread that writes into a bounded
pipe, while the store (or the remote client) reads the other end as a stream;
if ``torch.save`` fails, the stream raises instead of ending, so a partial
checkpoint is never committed. ``load`` hands ``torch.load`` a seekable
reader (local blocks, or HTTP Range requests), reading only what it needs.

torch is an optional extra: ``pip install ckptstore[torch]``.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Unpack

import torch

from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.checkpoints import CheckpointFields

PIECE_BYTES = 4 * 1024 * 1024


class _Pipe:
    """A file-like sink for torch.save whose bytes come out of ``chunks()``."""

    def __init__(self, depth: int = 8) -> None:
        # pieces, then None at the end or the error torch.save raised
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self._aborted = threading.Event()

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), PIECE_BYTES):
            self._put(bytes(view[start : start + PIECE_BYTES]))  # torch reuses its buffers
        return len(view)

    def flush(self) -> None:
        pass

    def finish(self, error: BaseException | None) -> None:
        self._put(error)

    def abort(self) -> None:
        """The reader gave up: make the writer fail fast instead of blocking."""
        self._aborted.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._aborted.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise BrokenPipeError("the checkpoint upload stopped reading")

    def chunks(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def _streamed(obj: Any, consume: Callable[[Iterator[bytes]], CheckpointRecord]) -> CheckpointRecord:
    pipe = _Pipe()

    def produce() -> None:
        try:
            torch.save(obj, pipe)  # type: ignore[arg-type]  # torch.save needs only write(), flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            pipe.finish(exc)
        else:
            pipe.finish(None)

    thread = threading.Thread(target=produce, name="ckptstore-torch-save", daemon=True)
    thread.start()
    try:
        return consume(pipe.chunks())
    except BaseException:
        pipe.abort()
        raise
    finally:
        thread.join()


def save(
    obj: Any, target: Any, job_id: str, **fields: Unpack[CheckpointFields]
) -> CheckpointRecord:
    """``torch.save(obj)`` as a new checkpoint of ``job_id`` in a CheckpointStore or Client."""
    return _streamed(obj, lambda chunks: target.put(job_id, chunks, **fields))


def fill(obj: Any, target: Any, checkpoint_id: str, **progress: Any) -> CheckpointRecord:
    """``torch.save(obj)`` as the data of a pending (e.g. manually requested) checkpoint;
    ``progress``: its ``epoch``, ``step`` and ``metrics``."""
    return _streamed(obj, lambda chunks: target.fill(checkpoint_id, chunks, **progress))


def load(target: Any, checkpoint_id: str, *, map_location: Any = None, **kwargs: Any) -> Any:
    """``torch.load`` of a checkpoint; ``map_location`` and other arguments pass through."""
    with target.open_reader(checkpoint_id) as raw:
        return torch.load(io.BufferedReader(raw, PIECE_BYTES), map_location=map_location, **kwargs)
