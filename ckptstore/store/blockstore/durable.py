"""The one durable-write helper: temp file, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TEMP_MARKER = ".tmp-"
# Pushes written data to disk without the metadata a full fsync also flushes; macOS's
# Python has no fdatasync, so there the full fsync does it.
_datasync = getattr(os, "fdatasync", os.fsync)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableFile:
    """A file written in pieces under a temporary sibling name, then made durable and
    visible under its own name at once by ``commit``.

    A crash leaves either no file or the whole file at ``path`` (plus, at worst, a
    temporary sibling whose name contains ``TEMP_MARKER``). With ``exclusive``,
    ``commit`` raises ``FileExistsError`` if ``path`` exists, and leaves it as it was.
    """

    def __init__(self, path: Path, *, exclusive: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._exclusive = exclusive
        self._temp = path.with_name(path.name + TEMP_MARKER + secrets.token_hex(4))
        self._fd: int | None = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def write(self, *parts: bytes | memoryview, push: bool = False) -> None:
        """Append the parts, in order; with ``push``, wait until what was written so far
        is on disk, so that ``commit`` has little left to flush."""
        if self._fd is None:
            raise ValueError(f"{self.path} is already committed or aborted")
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        if push:
            _datasync(self._fd)

    def commit(self) -> None:
        """Make the file durable under its name (the temporary one is gone after)."""
        if self._fd is None:
            raise ValueError(f"{self.path} is already committed or aborted")
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        except BaseException:
            self._temp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        try:
            if self._exclusive:
                os.link(self._temp, self.path)  # fails if path exists: atomic create-if-absent
                os.unlink(self._temp)
            else:
                os.replace(self._temp, self.path)
        except BaseException:
            self._temp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Drop what was written; nothing appears under the name. Safe to repeat, and a
        no-op after ``commit``."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)
        self._temp.unlink(missing_ok=True)


def durable_write(path: Path, data: bytes | memoryview, *, exclusive: bool = True) -> None:
    """Write ``data`` to ``path`` so that after return it survives a crash (see
    ``DurableFile``)."""
    file = DurableFile(path, exclusive=exclusive)
    try:
        file.write(data)
        file.commit()
    except BaseException:
        file.abort()
        raise
