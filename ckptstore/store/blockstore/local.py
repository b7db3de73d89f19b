"""BlockStore on a local directory: ``<root>/<name[:2]>/<name>.pack``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ckptstore.errors import PackNotFound
from ckptstore.store.blockstore.base import BlockStore, ObjectInfo, PendingObject
from ckptstore.store.blockstore.durable import TEMP_MARKER, DurableFile, durable_write
from ckptstore.store.blockstore.names import check_pack_name

_SUFFIX = ".pack"
MAX_CACHED_PATHS = 4096


class LocalBlockStore(BlockStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._paths: dict[str, str] = {}
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> str:
        path = self._paths.get(name)
        if path is None:
            path = os.path.join(self.root, check_pack_name(name)[:2], name + _SUFFIX)
            if len(self._paths) >= MAX_CACHED_PATHS:
                self._paths.clear()
            self._paths[name] = path  # reads name the same packs over and over
        return path

    def put(self, name: str, data: bytes | memoryview) -> None:
        durable_write(Path(self._path(name)), data, exclusive=True)

    def begin(self, name: str) -> PendingObject:
        return _LocalPending(DurableFile(Path(self._path(name)), exclusive=True))

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            fd = os.open(self._path(name), os.O_RDONLY)
        except FileNotFoundError:
            raise PackNotFound(name) from None
        try:
            if length is None:
                length = os.fstat(fd).st_size - offset
            data = os.pread(fd, length, offset)
            if len(data) < length:  # pread may return short reads on some filesystems
                parts = [data]
                got = len(data)
                while got < length:
                    more = os.pread(fd, length - got, offset + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
            return data
        finally:
            os.close(fd)

    def delete(self, name: str) -> None:
        Path(self._path(name)).unlink(missing_ok=True)

    def list(self) -> Iterator[ObjectInfo]:
        for entry in sorted(self.root.glob(f"*/*{_SUFFIX}")):
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            yield ObjectInfo(entry.name[: -len(_SUFFIX)], st.st_size, st.st_mtime)

    def sweep_incomplete(self, older_than: float) -> int:
        removed = 0
        for entry in self.root.glob(f"*/*{TEMP_MARKER}*"):
            try:
                if entry.stat().st_mtime < older_than:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class _LocalPending(PendingObject):
    """A pack written to its temporary file as it comes, each piece pushed to disk, so
    that committing it flushes only the last piece (bench: ab)."""

    def __init__(self, file: DurableFile) -> None:
        self._file = file

    def write(self, *parts: bytes | memoryview) -> None:
        self._file.write(*parts, push=True)

    def commit(self) -> None:
        self._file.commit()

    def abort(self) -> None:
        self._file.abort()
