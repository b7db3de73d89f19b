"""A local cache of downloaded checkpoints, shared by the processes of one machine.

::

    <cache_dir>/
      blobs/<digest>                 a file's bytes, named by its content digest
      blobs/<digest>.lock            held while the blob is downloaded
      blobs/<digest>.part[.etag]     an interrupted download, resumed by the next one
      <server>/files/<id>/<name>     a single-file checkpoint: a link to its blob
      <server>/folders/<id>/...      a folder checkpoint: a link per file

The digest is the ETag a server sends for the bytes (``ids.content_digest``, the
BLAKE3 of the block ids in order); a download fetches the blocks and checks each
against its id, so what becomes a blob is the content of its digest: equal bytes
share one blob whichever checkpoint, job or server they came from. The server is
asked first every time (whether the key may read the checkpoint), then a
checkpoint already linked is answered from disk. Two processes wanting the same
blob take turns on its lock file (the second finds it done); a process killed
mid-download leaves the part file, whose blocks that hash right the next download
keeps. A job's checkpoint linked here lets a pull of another fetch deltas on it.
Links are made under a temporary name and renamed into place, so a reader never
sees half a checkpoint. Nothing is evicted: delete the directory to empty it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ckptstore.errors import InvalidArgument
from ckptstore.store.ids import check_checkpoint_id


def default_cache_dir() -> Path:
    """``CKPTSTORE_CACHE``, else ``$XDG_CACHE_HOME/ckptstore`` or ``~/.cache/ckptstore``."""
    if explicit := os.environ.get("CKPTSTORE_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ckptstore"


class DownloadCache:
    """The cache directory ``root`` as seen by a client of the server at ``base_url``."""

    def __init__(self, root: str | os.PathLike[str], base_url: str) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        server = self.root / _server_dir(base_url)
        self.files = server / "files"
        self.folders = server / "folders"

    def cached(self, checkpoint_id: str) -> Path | None:
        """The checkpoint's path if it is linked here: its file, or its folder."""
        if "/" in checkpoint_id or checkpoint_id.startswith("."):
            return None  # not an id a link can be named by (an alias, a path)
        folder = self.folders / checkpoint_id
        if folder.is_dir():
            return folder
        single = self.files / checkpoint_id
        if single.is_dir():
            (path,) = single.iterdir()  # made whole by a rename: exactly one link
            return path
        return None

    def has_blob(self, digest: str) -> bool:
        """Whether the bytes of content digest ``digest`` are here."""
        return all(c in "0123456789abcdef" for c in digest) and (self.blobs / digest).exists()

    def blob(self, etag: str, fetch: Callable[[Path], None]) -> Path:
        """The blob of ``etag``'s bytes; ``fetch(path)`` writes and verifies it when it is
        missing, under the blob's lock (resuming ``<path>.part``)."""
        digest = etag.strip('"')
        if not digest or not all(c in "0123456789abcdef" for c in digest):
            raise InvalidArgument("ETag", etag, "a hex content digest from the server")
        path = self.blobs / digest
        if path.exists():
            return path
        self.blobs.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_name(digest + ".lock")):
            if not path.exists():  # another process may have fetched it meanwhile
                fetch(path)
        return path

    def link_file(self, checkpoint_id: str, name: str, blob: Path) -> Path:
        """Link the single-file checkpoint to its blob under its file name; returns the link."""

        def build(tmp: Path) -> None:
            tmp.mkdir()
            _symlink(blob, tmp / _safe_relative(name))

        return self._publish(self.files, checkpoint_id, build) / name

    def link_folder(self, checkpoint_id: str, files: Mapping[str, Path]) -> Path:
        """Link the folder checkpoint as a directory of ``files`` (relative path -> blob)."""

        def build(tmp: Path) -> None:
            tmp.mkdir()
            for relative, blob in files.items():
                link = tmp / _safe_relative(relative)
                link.parent.mkdir(parents=True, exist_ok=True)
                _symlink(blob, link)

        return self._publish(self.folders, checkpoint_id, build)

    def _publish(self, parent: Path, checkpoint_id: str, build: Callable[[Path], None]) -> Path:
        """Build the checkpoint's directory under a temporary name, then rename it in."""
        final = parent / check_checkpoint_id(checkpoint_id)
        if final.exists():
            return final
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{checkpoint_id}.{secrets.token_hex(4)}.tmp"
        try:
            build(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.exists():
                    raise
                # another process linked it first: the same bytes, keep theirs
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return final


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing) for the ``with`` block; the
    kernel drops it if the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _symlink(blob: Path, link: Path) -> None:
    link.symlink_to(os.path.relpath(blob, link.parent))


def _safe_relative(path: str) -> Path:
    """A folder checkpoint's file path, refused if it would leave the checkpoint's directory."""
    relative = Path(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise InvalidArgument("path", path, "a relative path inside the checkpoint")
    return relative


def _server_dir(base_url: str) -> str:
    """A directory name for the server: host and port (``localhost_8000``)."""
    parts = urlsplit(base_url)
    name = (parts.hostname or "server") + (f"_{parts.port}" if parts.port else "")
    return name + parts.path.rstrip("/").replace("/", "_")
