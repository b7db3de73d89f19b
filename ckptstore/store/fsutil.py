"""The one durable-write helper: temp file, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TEMP_MARKER = ".tmp-"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: Path, data: bytes | memoryview, *, exclusive: bool = True) -> None:
    """Write ``data`` to ``path`` so that after return it survives a crash.

    The bytes go to a temporary sibling first, which is fsynced and renamed
    over ``path``; the directory is fsynced so the rename itself is durable.
    A crash leaves either no file or the whole file at ``path`` (plus, at
    worst, a temporary sibling whose name contains ``TEMP_MARKER``).
    With ``exclusive`` an existing ``path`` raises ``FileExistsError``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + TEMP_MARKER + secrets.token_hex(4))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if exclusive:
            os.link(temp, path)  # fails if path exists: atomic create-if-absent
            os.unlink(temp)
        else:
            os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
