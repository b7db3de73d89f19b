"""The files of a checkpoint: one file, or a folder (a *tree*) of them.

A checkpoint's bytes are its files' bytes end to end, in the order of their
relative paths (sorted as strings, so as ``LC_ALL=C sort`` sorts UTF-8); each file
is cut into blocks on its own, so no block spans two files. A file's record
says where its bytes lie, its permission bits and the SHA-256 of its bytes.

A checkpoint's own ``sha256`` is its file's for a single file; for a tree it is
the SHA-256 of its listing in ``sha256sum``'s format, one line
``<sha256>  <path>\\n`` per file in that order (``tree_digest``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ckptstore.errors import InvalidArgument, InvalidPath
from ckptstore.store.catalog.records import CheckpointRecord, FileRecord

DEFAULT_MODE = 0o644
MAX_PATH_BYTES = 4096


def default_name(checkpoint_id: str) -> str:
    """The file name of a checkpoint stored from bytes or a stream, or before folders."""
    return f"{checkpoint_id}.ckpt"


def check_path(path: str) -> str:
    """``path`` if it is a safe relative POSIX path; raises InvalidPath otherwise."""
    if not isinstance(path, str) or not path:
        raise InvalidPath(path, "not empty")
    if "\\" in path or any(ord(c) < 0x20 or c == "\x7f" for c in path):
        # a newline would also make two listings of files digest alike (listing_digest)
        raise InvalidPath(path, "no control characters (NUL, newline...) or backslash")
    if path.startswith("/"):
        raise InvalidPath(path, "not absolute")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(path, "valid UTF-8") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPath(path, f"at most {MAX_PATH_BYTES} bytes")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidPath(path, "no empty, '.' or '..' component")
    return path


def check_file_name(name: str) -> str:
    """``name`` if it is a safe name for a single-file checkpoint (no folder in it)."""
    if "/" in check_path(name):
        raise InvalidPath(name, "a file name, without '/'")
    return name


def qualified_slot(path: str, slot: str | None) -> str | None:
    """The slot of a tensor block of file ``path`` of a tree: the same tensor of the
    same file in the job's next checkpoint has the same one."""
    return None if slot is None else f"{path}:{slot}"


def tree_digest(files: list[FileRecord]) -> str | None:
    """The SHA-256 of a tree's ``sha256sum`` listing; None while a file's is unknown."""
    if any(f.sha256 is None for f in files):
        return None
    listing = "".join(f"{f.sha256}  {f.path}\n" for f in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def checkpoint_digest(layout: str, files: list[FileRecord]) -> str | None:
    """The checkpoint's ``sha256`` from its files'."""
    if layout == "file":
        return files[0].sha256 if len(files) == 1 else None
    return tree_digest(files)


def files_of(record: CheckpointRecord, rows: list[FileRecord]) -> list[FileRecord]:
    """A checkpoint's files: its rows, or for one stored before folders, one file of
    the default name holding all its bytes."""
    if rows or record.layout == "tree":
        return rows
    return [FileRecord(default_name(record.checkpoint_id), 0, record.size_bytes, DEFAULT_MODE)]


def find_file(files: list[FileRecord], path: str) -> FileRecord:
    """The file of ``files`` at ``path``; InvalidArgument naming the paths otherwise."""
    for record in files:
        if record.path == path:
            return record
    shown = ", ".join(f.path for f in files[:5]) + (", ..." if len(files) > 5 else "")
    raise InvalidArgument("path", path, f"a file of the checkpoint ({shown})")


@dataclass(frozen=True)
class LocalFile:
    """A file of a folder being stored: where it is, its path in the checkpoint, mode."""

    source: Path
    path: str
    mode: int


def is_tree(source: object) -> bool:
    """Whether ``source`` names a folder (stored as a tree)."""
    return isinstance(source, str | os.PathLike) and Path(source).is_dir()


def walk_tree(root: str | os.PathLike[str]) -> list[LocalFile]:
    """The regular files under ``root`` in checkpoint order (symbolic links to files are
    read as the files they point at). Refuses a folder with no file, and anything that
    is neither a file nor a folder (sockets, devices, links to folders)."""
    base = Path(root)
    found: list[LocalFile] = []
    for folder, dirs, names in os.walk(base, onerror=_raise):
        for name in dirs:
            if (Path(folder) / name).is_symlink():
                raise InvalidArgument("source", str(Path(folder) / name), "no link to a folder")
        for name in names:
            full = Path(folder) / name
            info = full.stat()
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgument("source", str(full), "regular files and folders only")
            path = check_path(full.relative_to(base).as_posix())
            found.append(LocalFile(full, path, stat.S_IMODE(info.st_mode) & 0o777))
    if not found:
        raise InvalidArgument("source", str(root), "a folder holding at least one file")
    return sorted(found, key=lambda f: f.path)


def _raise(error: OSError) -> None:
    raise error


def check_layout(files: list[FileRecord], size_bytes: int) -> None:
    """Raises InvalidArgument unless ``files`` are safe, distinct, in checkpoint order
    and tile ``[0, size_bytes)`` end to end."""
    offset = 0
    previous: str | None = None
    seen: set[str] = set()
    for record in files:
        check_path(record.path)
        if previous is not None and record.path <= previous:
            raise InvalidArgument("files", record.path, "distinct paths in sorted order")
        parts = record.path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in seen:  # "a" and "a/b": no folder could hold both
                raise InvalidArgument("files", record.path, "no file inside another file's path")
        seen.add(record.path)
        if record.offset != offset or record.size_bytes < 0:
            raise InvalidArgument("files", record.path, "files end to end from offset 0")
        if not 0 <= record.mode <= 0o777:
            raise InvalidArgument("mode", record.mode, "permission bits (0 to 0o777)")
        offset += record.size_bytes
        previous = record.path
    if offset != size_bytes:
        raise InvalidArgument("files", offset, f"file sizes adding up to {size_bytes}")


def restore_path(dest: Path, path: str) -> Path:
    """Where file ``path`` of a tree goes under ``dest``: never outside it."""
    target = dest.joinpath(*PurePosixPath(check_path(path)).parts)
    if not target.resolve().is_relative_to(dest.resolve()):
        raise InvalidPath(path, "not through a link out of the folder")
    return target
