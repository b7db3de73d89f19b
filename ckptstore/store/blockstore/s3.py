"""BlockStore on S3-compatible object storage: ``s3://<bucket>/<prefix>/<name>.pack``.

Written with boto3 (docs/design.md, "Packs on object storage", says why not obstore):

- ``put`` is one ``PutObject`` with ``If-None-Match: *``: the bucket refuses to
  replace an existing object (412), so a pack is never overwritten.
- ``begin`` gathers pieces into parts and sends each as a part of a multipart
  upload, started only once the pack outgrows one part (a small pack is one
  ``PutObject`` at commit). ``CompleteMultipartUpload`` carries ``If-None-Match: *``
  too, and the object is invisible until it returns: nothing half-written is ever
  listed or read.
- ``get`` is one ranged ``GetObject``.
- Retries are botocore's "standard" mode: bounded attempts with exponential backoff
  and jitter on 5xx, throttling and connection errors, none on other 4xx. What still
  fails after them is raised as ``OSError`` (EIO), as a failing disk would be.
- ``sweep_incomplete`` aborts multipart uploads under the prefix started before the
  cutoff (a crashed writer's parts, which the bucket would otherwise keep and bill).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ckptstore.errors import InvalidArgument, PackNotFound
from ckptstore.store.blockstore.base import BlockStore, ObjectInfo, PendingObject
from ckptstore.store.blockstore.names import check_pack_name

# boto3 is the `s3` extra, imported when a store is opened; it ships no types
S3Client = Any

T = TypeVar("T")
_SUFFIX = ".pack"
# S3 takes parts of 5 MiB and more (but the last); larger parts mean fewer requests
PART_BYTES = 8 * 1024 * 1024
MAX_ATTEMPTS = 5  # botocore's count: the first try and up to four retries
_MISSING = {"404", "NoSuchKey", "NotFound"}
_TAKEN = {"412", "PreconditionFailed", "ConditionalRequestConflict"}


class ObjectStoreError(OSError):
    """The object store failed a request, after the retries it was allowed."""

    def __init__(self, operation: str, name: str, cause: Exception) -> None:
        super().__init__(errno.EIO, f"object storage {operation} {name!r} failed: {cause}")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket`` or ``s3://bucket/some/prefix``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise InvalidArgument("blocks", url, "a directory or s3://bucket[/prefix]")
        prefix = parts.path.strip("/")
        return cls(parts.netloc, prefix + "/" if prefix else "")


@dataclass(frozen=True)
class S3Timeouts:
    """How long one attempt may wait: to connect, and between bytes read (an answer
    that stalls longer is an attempt failed, retried like a broken connection)."""

    connect_s: float = 10.0
    # every attempt of a stalled request waits this long: all of them together stay
    # well under the client's own read timeout, so that it gets the server's answer
    read_s: float = 30.0


def s3_client(
    endpoint_url: str | None = None,
    max_connections: int = 32,
    timeouts: S3Timeouts = S3Timeouts(),
) -> S3Client:
    """A client configured from the standard AWS variables (credentials, ``AWS_REGION``
    or ``AWS_DEFAULT_REGION``), talking to ``endpoint_url`` (MinIO, Ceph, a test
    server) when given, with bounded retries and ``timeouts`` per attempt."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        connect_timeout=timeouts.connect_s,
        read_timeout=timeouts.read_s,
        max_pool_connections=max_connections,
        # checksums only where S3 requires them: several S3-compatible stores refuse
        # the trailing checksums boto3 otherwise adds to every upload
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # path-style URLs: custom endpoints rarely have a DNS name per bucket
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    client: S3Client = boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    )
    return client


class S3BlockStore(BlockStore):
    """Packs as objects under a bucket's prefix. An existing object holding the very
    bytes ``put`` (or a multipart ``commit``) was given counts as its own: that is
    what a retried request whose first attempt landed finds (pack names are random,
    so no other writer makes one)."""

    def __init__(self, client: S3Client, location: S3Location) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.client = client
        self.location = location
        self._errors = (BotoCoreError, ClientError)

    @classmethod
    def from_url(
        cls, url: str, endpoint_url: str | None = None, timeouts: S3Timeouts = S3Timeouts()
    ) -> S3BlockStore:
        """The store at ``s3://bucket/prefix``; InvalidArgument if the bucket does not
        exist (so that a server stops at start, not at its first write)."""
        store = cls(s3_client(endpoint_url, timeouts=timeouts), S3Location.parse(url))
        bucket = store.location.bucket
        try:
            store.call("open bucket", bucket, lambda: store.client.head_bucket(Bucket=bucket))
        except PackNotFound:
            where = f" at {endpoint_url}" if endpoint_url else ""
            raise InvalidArgument("blocks", url, f"a bucket that exists{where}") from None
        return store

    def key(self, name: str) -> str:
        return f"{self.location.prefix}{check_pack_name(name)}{_SUFFIX}"

    def call(self, operation: str, name: str, request: Callable[[], T]) -> T:
        """``request()``, its failures (past botocore's retries) as ``PackNotFound``,
        ``FileExistsError`` or ``ObjectStoreError``."""
        try:
            return request()
        except self._errors as exc:
            code = _error_code(exc)
            if code in _MISSING:
                raise PackNotFound(name) from None
            if code in _TAKEN:
                raise FileExistsError(errno.EEXIST, "pack exists", name) from None
            raise ObjectStoreError(operation, name, exc) from exc

    def put(self, name: str, data: bytes | memoryview) -> None:
        key = self.key(name)
        body = bytes(data) if isinstance(data, memoryview) else data
        try:
            self.call(
                "put",
                name,
                lambda: self.client.put_object(
                    Bucket=self.location.bucket, Key=key, Body=body, IfNoneMatch="*"
                ),
            )
        except FileExistsError:
            # A retried PutObject whose first attempt landed sees its own object.
            if not self.holds(name, hashlib.md5(body).hexdigest()):
                raise

    def holds(self, name: str, etag: str) -> bool:
        """Whether the object ``name`` exists with this ETag."""
        try:
            head = self.call(
                "head",
                name,
                lambda: self.client.head_object(Bucket=self.location.bucket, Key=self.key(name)),
            )
        except PackNotFound:
            return False
        return bool(head["ETag"].strip('"') == etag)

    def begin(self, name: str) -> PendingObject:
        return _MultipartObject(self, name)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        key = self.key(name)
        if length == 0:
            self.call(
                "head", name, lambda: self.client.head_object(Bucket=self.location.bucket, Key=key)
            )
            return b""
        ranged: dict[str, str] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            ranged["Range"] = f"bytes={offset}-{end}"
        try:
            response = self.call(
                "get",
                name,
                lambda: self.client.get_object(Bucket=self.location.bucket, Key=key, **ranged),
            )
            data: bytes = self.call("get", name, response["Body"].read)
            return data
        except ObjectStoreError as exc:
            if _error_code(exc.__cause__) == "InvalidRange":  # from at or past the end
                self.get(name, 0, 0)  # PackNotFound if it is not there at all
                return b""
            raise

    def delete(self, name: str) -> None:
        key = self.key(name)
        self.call(
            "delete", name, lambda: self.client.delete_object(Bucket=self.location.bucket, Key=key)
        )

    def list(self) -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self.location.prefix, Delimiter="/"
        )
        for page in self.call("list", self.location.prefix, lambda: list(pages)):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.location.prefix) :]
                if name.endswith(_SUFFIX):
                    yield ObjectInfo(
                        name[: -len(_SUFFIX)], obj["Size"], obj["LastModified"].timestamp()
                    )

    def sweep_incomplete(self, older_than: float) -> int:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.location.bucket, Prefix=self.location.prefix
        )
        aborted = 0
        for page in self.call("list uploads", self.location.prefix, lambda: list(pages)):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() < older_than:
                    self.abort_upload(upload["Key"], upload["UploadId"])
                    aborted += 1
        return aborted

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Drop a multipart upload and its parts (gone already is fine)."""
        try:
            self.call(
                "abort",
                key,
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.location.bucket, Key=key, UploadId=upload_id
                ),
            )
        except ObjectStoreError as exc:
            if _error_code(exc.__cause__) != "NoSuchUpload":  # gone already
                raise


def _error_code(exc: BaseException | None) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    code = str(response.get("Error", {}).get("Code", ""))
    return code or str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


class _MultipartObject(PendingObject):
    """A pack sent in parts as they fill; a multipart upload is started with the
    first full part, so a pack smaller than one part is a single ``PutObject``."""

    def __init__(self, store: S3BlockStore, name: str) -> None:
        self._store = store
        self._name = name
        self._key = store.key(name)
        self._buffer: bytearray | None = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._part_md5s: list[bytes] = []

    def write(self, *parts: bytes | memoryview) -> None:
        buffer = self._open_buffer()
        for part in parts:
            buffer += part
        while len(buffer) >= PART_BYTES:
            self._send_part(memoryview(buffer)[:PART_BYTES].tobytes())
            del buffer[:PART_BYTES]

    def commit(self) -> None:
        buffer = self._open_buffer()
        self._buffer = None
        try:
            if self._upload_id is None:
                self._store.put(self._name, bytes(buffer))
                return
            if buffer or not self._parts:
                self._send_part(bytes(buffer))
            self._complete()
        except BaseException:
            self._drop_upload()
            raise

    def abort(self) -> None:
        self._buffer = None
        self._drop_upload()

    def _open_buffer(self) -> bytearray:
        if self._buffer is None:
            raise ValueError(f"object {self._name} is already committed or aborted")
        return self._buffer

    def _send_part(self, data: bytes) -> None:
        client, bucket = self._store.client, self._store.location.bucket
        if self._upload_id is None:
            created = self._store.call(
                "begin",
                self._name,
                lambda: client.create_multipart_upload(Bucket=bucket, Key=self._key),
            )
            self._upload_id = created["UploadId"]
        upload_id, number = self._upload_id, len(self._parts) + 1
        sent = self._store.call(
            "write",
            self._name,
            lambda: client.upload_part(
                Bucket=bucket, Key=self._key, UploadId=upload_id, PartNumber=number, Body=data
            ),
        )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})
        self._part_md5s.append(hashlib.md5(data).digest())

    def _complete(self) -> None:
        client, bucket, upload_id = self._store.client, self._store.location.bucket, self._upload_id
        assert upload_id is not None
        try:
            self._store.call(
                "commit",
                self._name,
                lambda: client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": self._parts},
                    IfNoneMatch="*",
                ),
            )
        except FileExistsError:
            # a retried complete whose first attempt landed sees its own object
            whole = hashlib.md5(b"".join(self._part_md5s)).hexdigest()
            if not self._store.holds(self._name, f"{whole}-{len(self._parts)}"):
                raise
        self._upload_id = None  # completed: nothing to abort

    def _drop_upload(self) -> None:
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            self._store.abort_upload(self._key, upload_id)
