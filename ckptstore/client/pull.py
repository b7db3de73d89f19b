"""Downloads: a resumable pull into ``<dest>.part``, checked against the ETag.

The whole transfer runs under the transport's retry policy: an attempt that
fails mid-body leaves what it wrote in the part file, and the next attempt asks
for the rest with ``Range`` and ``If-Range`` (the ETag), so content that changed
meanwhile comes whole instead of being spliced.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ckptstore.client.transport import Transport
from ckptstore.errors import IntegrityError, RemoteRejected, ServerUnavailable
from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.chunking.fingerprint import fingerprint
from ckptstore.store.ids import content_digest

Progress = Callable[[int], None]
READ_BYTES = 1 << 20


class Download:
    """One download of a checkpoint to ``dest``, renamed there once verified."""

    def __init__(
        self,
        transport: Transport,
        checkpoint_id: str,
        fresh_url: Callable[[], str],
        chunker: ChunkerParams,
        dest: Path,
        progress: Progress | None = None,
    ) -> None:
        self._transport = transport
        self._checkpoint_id = checkpoint_id
        self._fresh_url = fresh_url  # a new signed URL: the old one may expire mid-pull
        self._chunker = chunker
        self._dest = dest
        self._part = dest.with_name(dest.name + ".part")
        self._tag = dest.with_name(dest.name + ".part.etag")
        self._progress = progress
        self._url = ""

    def run(self) -> int:
        """Fetch what the part file lacks, verify, rename; returns the size in bytes."""
        self._url = self._fresh_url()
        head = self._transport.request("HEAD", self._url)
        size, etag = int(head.headers["content-length"]), head.headers["etag"]
        have = self._resumable(etag)
        if self._progress and have:
            self._progress(have)
        self._transport.retry.call(lambda: self._fetch_rest(size, etag))
        self._verify(etag)
        return size

    def _resumable(self, etag: str) -> int:
        if self._part.exists() and self._tag.exists() and self._tag.read_text() == etag:
            return self._part.stat().st_size
        self._part.write_bytes(b"")
        self._tag.write_text(etag)
        return 0

    def _fetch_rest(self, size: int, etag: str) -> None:
        """One attempt; a body that ends early is a failure worth retrying."""
        try:
            have = self._fetch(etag)
        except RemoteRejected as exc:
            if exc.code != "url_expired":
                raise
            self._url = self._fresh_url()
            have = self._fetch(etag)
        if have < size:
            raise ServerUnavailable(0, "short_body", f"download ended at byte {have} of {size}")

    def _fetch(self, etag: str) -> int:
        have = self._part.stat().st_size
        headers = {"Range": f"bytes={have}-", "If-Range": etag} if have else {}
        response = self._transport.stream("GET", self._url, headers)
        try:
            if have and response.status_code == 200:
                have = 0  # the content changed: start over
            with open(self._part, "r+b" if have else "wb") as out:
                out.seek(have)
                for chunk in response.iter_raw(READ_BYTES):
                    out.write(chunk)
                    have += len(chunk)
                    if self._progress:
                        self._progress(len(chunk))
        finally:
            response.close()
        return have

    def _verify(self, etag: str) -> None:
        with ThreadPoolExecutor(2) as pool:
            ids = (bid for bid, _ in fingerprint(self._part, self._chunker, pool))
            digest = content_digest(ids)
        if f'"{digest}"' != etag:
            self._part.unlink(missing_ok=True)
            self._tag.unlink(missing_ok=True)
            raise IntegrityError(
                f"download of {self._checkpoint_id} does not match its ETag {etag}; removed"
            )
        self._part.replace(self._dest)
        self._tag.unlink(missing_ok=True)
