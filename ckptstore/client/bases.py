"""The local copy of a job's previous checkpoint, which a push sends deltas against.

A save differs little from the one before it, and the client often still has
that one on disk: (a) the file or folder it pushed as the job's latest
checkpoint, unchanged since (its path, sizes and modification times are kept
in the cache directory, per server, key and job: ``PushMemory``), or (b) the
checkpoint in the download cache (``cache.py``). The server is asked which
checkpoint is the job's latest, and a local copy is used only when it is of
that checkpoint and, cut and hashed again as the store cuts it, gives its
content digest (the download ETag): a file changed since is never a base.

Each block is read again from the copy when a delta needs it, and used only if
it still hashes to its id.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import blake3

from ckptstore.client.cache import DownloadCache
from ckptstore.client.transport import Transport
from ckptstore.errors import NotFound
from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.chunking.fingerprint import iter_blocks
from ckptstore.store.files import is_tree, qualified_slot, walk_tree
from ckptstore.store.ids import block_id, content_digest

PUSHED_DIR = "pushed"  # under the cache directory: what was pushed last, per job


@dataclass(frozen=True)
class BaseBlock:
    """A block of the local copy: its id and where its bytes are."""

    block_id: bytes
    file: Path
    offset: int  # in ``file``
    raw_len: int


class LocalBase:
    """A checkpoint's bytes on local disk, cut as the store cuts them: its tensor blocks
    by slot, and each file's blocks in order (for the opaque bytes around them)."""

    def __init__(self, slots: dict[str, BaseBlock], files: dict[str, list[BaseBlock]]) -> None:
        self._slots = slots
        self._files = files

    def by_slot(self, slot: str, raw_len: int) -> BaseBlock | None:
        """The block at ``slot``, if it is ``raw_len`` long (a tensor delta's base)."""
        found = self._slots.get(slot)
        return found if found is not None and found.raw_len == raw_len else None

    def at_place(self, path: str, offset: int, raw_len: int) -> BaseBlock | None:
        """The block of file ``path`` ("" for a single file) that covers the middle of
        ``offset .. offset + raw_len`` (an opaque block's base)."""
        blocks = self._files.get(path)
        if not blocks:
            return None
        middle = offset + raw_len // 2
        at = bisect.bisect_right(blocks, middle, key=lambda block: block.offset) - 1
        if at >= 0 and middle < blocks[at].offset + blocks[at].raw_len:
            return blocks[at]
        return None

    def read(self, block: BaseBlock) -> bytes | None:
        """The block's bytes, or None if the file no longer holds them."""
        try:
            with open(block.file, "rb") as file:
                data = os.pread(file.fileno(), block.raw_len, block.offset)
        except OSError:
            return None
        return data if block_id(data) == block.block_id else None


def cut_local(root: Path, chunker: ChunkerParams) -> tuple[LocalBase, str]:
    """A local file or folder cut and hashed as the store cuts it; with its content
    digest (the ETag of the checkpoint it would be)."""
    tree = is_tree(root)
    files = [(f.path, f.source) for f in walk_tree(root)] if tree else [("", root)]
    slots: dict[str, BaseBlock] = {}
    placed: dict[str, list[BaseBlock]] = {}
    ids: list[bytes] = []
    with ThreadPoolExecutor(2) as hashers:
        for path, source in files:
            offset = 0
            blocks = placed.setdefault(path, [])
            for window in iter_blocks(source, chunker, hashers):
                for bid, view, cut in window:
                    block = BaseBlock(bid, source, offset, len(view))
                    slot = qualified_slot(path, cut.slot) if tree else cut.slot
                    if slot is not None:
                        slots[slot] = block
                    else:
                        blocks.append(block)
                    ids.append(bid)
                    offset += len(view)
    return LocalBase(slots, placed), content_digest(ids)


class PushMemory:
    """What this client last pushed as each job's checkpoint: a small JSON file per
    server, key and job under ``<cache_dir>/pushed`` (the key itself is not kept)."""

    def __init__(self, cache_dir: Path, base_url: str, api_key: str | None) -> None:
        self._dir = cache_dir / PUSHED_DIR
        self._scope = f"{base_url.rstrip('/')}\0{api_key or ''}"

    def remember(self, job_id: str, checkpoint_id: str, source: Path) -> None:
        """Note that ``source`` (a file or folder, as it is now) was pushed as
        ``checkpoint_id``; a failure to write it only loses the hint."""
        try:
            entry = {
                "checkpointId": checkpoint_id,
                "path": str(source.resolve()),
                "files": _stats(source),
            }
            self._dir.mkdir(parents=True, exist_ok=True)
            target = self._file(job_id)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(entry))
            os.replace(tmp, target)
        except (OSError, ValueError):
            pass

    def recall(self, job_id: str, checkpoint_id: str) -> Path | None:
        """The path pushed as ``checkpoint_id``, if its files are as they were then."""
        try:
            entry = json.loads(self._file(job_id).read_text())
            if entry.get("checkpointId") != checkpoint_id:
                return None
            path = Path(entry["path"])
            return path if _stats(path) == entry["files"] else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _file(self, job_id: str) -> Path:
        name = blake3.blake3(f"{self._scope}\0{job_id}".encode()).hexdigest()[:32]
        return self._dir / f"{name}.json"


def _stats(source: Path) -> list[list[object]]:
    """``[path, size, mtime_ns]`` of each file of ``source`` (a folder's, or the file)."""
    files = [(f.path, f.source) for f in walk_tree(source)] if is_tree(source) else [("", source)]
    listed: list[list[object]] = []
    for path, file in files:
        info = Path(file).stat()
        listed.append([path, info.st_size, info.st_mtime_ns])
    return listed


class BaseFinder:
    """Finds, when first asked, the local copy of the job's latest checkpoint for a
    push into ``checkpoint_id``; None when there is none that may be trusted."""

    def __init__(
        self,
        transport: Transport,
        memory: PushMemory,
        cache: DownloadCache,
        chunker: Callable[[], ChunkerParams],
        checkpoint_id: str,
        job_id: str | None,
    ) -> None:
        self._transport = transport
        self._memory = memory
        self._cache = cache
        self._chunker = chunker
        self._checkpoint_id = checkpoint_id
        self._job_id = job_id
        self._lock = threading.Lock()
        self._asked = False
        self._found: LocalBase | None = None

    def get(self) -> LocalBase | None:
        """The local base (found once; later calls wait for the first)."""
        with self._lock:
            if not self._asked:
                self._asked = True
                self._found = self._find()
            return self._found

    def _find(self) -> LocalBase | None:
        job_id = self._job_id or str(self._json(self._checkpoint_id)["jobId"])
        try:
            latest = self._json(f"{job_id}:latest")
        except NotFound:
            return None  # the job's first checkpoint
        latest_id, url = str(latest["checkpointId"]), latest.get("downloadUrl")
        if latest_id == self._checkpoint_id or not isinstance(url, str):
            return None
        path = self._memory.recall(job_id, latest_id) or self._cache.cached(latest_id)
        if path is None:
            return None
        etag = self._transport.request("HEAD", url).headers.get("etag", "")
        try:
            base, digest = cut_local(Path(path), self._chunker())
        except (OSError, ValueError):
            return None
        return base if etag.strip('"').removesuffix(".tar") == digest else None

    def _json(self, reference: str) -> dict[str, object]:
        path = f"/v2/training/checkpoints/{quote(reference, safe='')}"
        answer: dict[str, object] = self._transport.request("GET", path).json()
        return answer
