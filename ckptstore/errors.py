"""Every error ckptstore raises on purpose.

::

    CkptStoreError
    ├── InvalidArgument (ValueError)          a caller passed a bad value
    │   ├── InvalidJobId
    │   ├── InvalidCheckpointType
    │   ├── InvalidLimit
    │   ├── UnknownSortKey
    │   ├── InvalidPath                       a file path of a folder checkpoint that is unsafe
    │   ├── UnknownAlias                      JOB:NAME, NAME not latest, best or final
    │   ├── AmbiguousCheckpointId             a prefix several of the caller's checkpoints share
    │   ├── BadBlockFrame                     an uploaded batch of block frames is malformed
    │   └── UnknownBlocks                     block ids none of the caller's checkpoints hold
    ├── NotFound (KeyError)                   the thing named does not exist
    │   ├── CheckpointNotFound
    │   ├── EndpointNotFound
    │   └── PackNotFound
    ├── Conflict                              the request clashes with what exists
    │   ├── CheckpointExists
    │   ├── CheckpointPinned                  an endpoint serves it
    │   ├── EndpointNameTaken                 the tenant has an endpoint of that name
    │   └── CheckpointNotReady                it has no data yet (pending)
    ├── IntegrityError                        stored data is not what the catalog says
    │   ├── CorruptBlockError                 bytes read back do not hash to their id
    │   ├── MissingBlockError                 a referenced block is not stored
    │   └── UnreadableBlockError              the block store failed to read a block (I/O)
    ├── UploadError                           a dedup-aware upload cannot commit
    │   ├── BlockHashMismatch                 bytes sent do not hash to the id claimed
    │   ├── BlocksNotUploaded                 the manifest names blocks never sent
    │   ├── DeltaBaseUnavailable              a block sent as a delta names a base the
    │   │                                     tenant cannot see (absent or another's)
    │   └── UndecodableBlock                  a block sent encoded does not decode
    ├── FormatError                           data written by a format this code does not know
    ├── StorageFull                           the store's disk (or quota) has no room left
    └── RemoteError                           a ckptstore server answered with an error
        ├── AuthenticationFailed              401: no key, or a wrong or revoked one
        ├── RemoteNotFound (NotFound)         404
        ├── RemoteConflict (Conflict)         409
        ├── RemoteRejected (ValueError)       400, 413, 415, 416, 422: the request was wrong
        └── ServerUnavailable                 5xx or no connection, after the retries

Each class carries what a user needs as attributes; ``http_status`` and
``exit_code`` are the single mapping used by the server and the CLI.

A server sends an error as its class name, message and attributes
(``wire_fields``); the client raises the same class with the same attributes
(``from_wire``), so ``except CheckpointNotFound`` works against either. The
``RemoteError`` classes are left for answers that name no class (the HTTP layer's
own: authentication, signatures, body limits) and for an unreachable server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Self


class CkptStoreError(Exception):
    """Base of every ckptstore error."""

    http_status = 500
    exit_code = 1
    code = "internal_error"

    def wire_fields(self) -> dict[str, object]:
        """The attributes this error carries, camelCased and JSON-safe, for an error answer."""
        return {
            _camel(name): _json_safe(value)
            for name, value in vars(self).items()
            if not name.startswith("_")
        }

    @classmethod
    def from_wire(cls, message: str, fields: Mapping[str, object]) -> Self:
        """The error an answer describes: this class, its message, its attributes.

        The constructor is bypassed because each class's parameters differ from
        the attributes it keeps (``InvalidLimit(value, low, high)`` keeps ``allowed``)."""
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        for name, value in fields.items():
            setattr(error, _snake(name), value)
        return error


class InvalidArgument(CkptStoreError, ValueError):
    """A caller passed a value outside what the parameter allows."""

    http_status = 422
    exit_code = 2
    code = "invalid_argument"

    def __init__(self, parameter: str, value: object, allowed: str) -> None:
        self.parameter = parameter
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {parameter} {value!r}: expected {allowed}")


class InvalidJobId(InvalidArgument):
    """A job id that is empty, too long or has characters outside [A-Za-z0-9._-]."""

    def __init__(self, value: object) -> None:
        super().__init__(
            "jobId", value, "1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )


class InvalidCheckpointType(InvalidArgument):
    """A checkpoint type other than automatic, best, manual or final."""

    def __init__(self, value: object, allowed: tuple[str, ...]) -> None:
        super().__init__("type", value, "one of " + ", ".join(allowed))


class InvalidLimit(InvalidArgument):
    """A list limit outside the allowed range."""

    def __init__(self, value: object, low: int, high: int) -> None:
        super().__init__("limit", value, f"an integer from {low} to {high}")


class UnknownSortKey(InvalidArgument):
    """A sort key that is neither a checkpoint field nor a metric of the job."""

    def __init__(self, value: object, allowed: list[str]) -> None:
        super().__init__("sortBy", value, "one of " + ", ".join(allowed))


class InvalidPath(InvalidArgument):
    """A file path of a checkpoint that is empty, absolute, climbs out (``..``), or holds
    a NUL, a backslash or an empty or ``.`` component: a path must name a place inside
    the folder on every system that writes it back."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__("path", value, f"a relative path inside the folder ({reason})")
        self.reason = reason


class UnknownAlias(InvalidArgument):
    """A reference ``JOB:NAME`` whose NAME is not an alias (``refs.ALIASES``)."""

    def __init__(self, reference: str, allowed: tuple[str, ...]) -> None:
        super().__init__("checkpointId", reference, "JOB:" + " | JOB:".join(allowed))


class AmbiguousCheckpointId(InvalidArgument):
    """A checkpoint id prefix that more than one of the caller's checkpoints start with.

    ``matches`` names some of them (the caller's own, never another tenant's)."""

    exit_code = 13
    code = "ambiguous_checkpoint_id"

    def __init__(self, prefix: str, matches: list[str], more: bool = False) -> None:
        self.prefix = prefix
        self.matches = matches
        self.parameter = "checkpointId"
        self.value = prefix
        self.allowed = "a longer prefix, or the full id"
        shown = ", ".join(matches) + (" and more" if more else "")
        CkptStoreError.__init__(
            self, f"checkpoint id prefix {prefix!r} is ambiguous: {shown} start with it"
        )


class BadBlockFrame(InvalidArgument):
    """A frame of an uploaded block batch that cannot be parsed (``blockframes.py``)."""

    http_status = 400
    code = "malformed_batch"

    def __init__(self, offset: int, problem: str) -> None:
        self.offset = offset  # where the bad frame starts in the (decoded) body
        self.problem = problem
        self.parameter = "body"
        self.value = offset
        self.allowed = "frames of block id, length and bytes"
        CkptStoreError.__init__(self, f"frame at byte {offset}: {problem}")


class UnknownBlocks(InvalidArgument):
    """Block ids named in a block fetch that the caller's checkpoints do not reference:
    absent ones and another tenant's get this same answer."""

    code = "unknown_blocks"

    def __init__(self, block_ids: list[str]) -> None:
        self.block_ids = block_ids
        self.parameter = "blocks"
        self.value = block_ids[:5]
        self.allowed = "ids of blocks of the caller's checkpoints"
        shown = ", ".join(block_ids[:5]) + (" ..." if len(block_ids) > 5 else "")
        CkptStoreError.__init__(
            self, f"{len(block_ids)} block id(s) not among the caller's blocks: {shown}"
        )


class NotFound(CkptStoreError, KeyError):
    """The named object does not exist (or is not visible to the caller)."""

    http_status = 404
    exit_code = 3
    code = "not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class CheckpointNotFound(NotFound):
    def __init__(self, checkpoint_id: str) -> None:
        self.checkpoint_id = checkpoint_id
        super().__init__(f"checkpoint {checkpoint_id!r} not found")


class EndpointNotFound(NotFound):
    def __init__(self, endpoint_id: str) -> None:
        self.endpoint_id = endpoint_id
        super().__init__(f"endpoint {endpoint_id!r} not found")


class PackNotFound(NotFound):
    def __init__(self, pack_id: str) -> None:
        self.pack_id = pack_id
        super().__init__(f"pack {pack_id!r} not found in block storage")


class Conflict(CkptStoreError):
    http_status = 409
    exit_code = 7
    code = "conflict"


class CheckpointExists(Conflict):
    def __init__(self, checkpoint_id: str) -> None:
        self.checkpoint_id = checkpoint_id
        super().__init__(f"checkpoint {checkpoint_id!r} already exists")


class CheckpointPinned(Conflict):
    def __init__(self, checkpoint_id: str, endpoint_ids: list[str]) -> None:
        self.checkpoint_id = checkpoint_id
        self.endpoint_ids = endpoint_ids
        super().__init__(
            f"checkpoint {checkpoint_id!r} is deployed by endpoint(s) {', '.join(endpoint_ids)};"
            " delete the endpoint(s) first"
        )


class EndpointNameTaken(Conflict):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"an endpoint named {name!r} exists already")


class CheckpointNotReady(Conflict):
    def __init__(self, checkpoint_id: str) -> None:
        self.checkpoint_id = checkpoint_id
        super().__init__(f"checkpoint {checkpoint_id!r} is pending: no data has been uploaded")


class IntegrityError(CkptStoreError):
    """Stored data disagrees with the catalog; never returned as if it were good."""

    http_status = 500
    exit_code = 4
    code = "integrity_error"


class CorruptBlockError(IntegrityError):
    def __init__(self, block_id: str, pack_id: str, reason: str) -> None:
        self.block_id = block_id
        self.pack_id = pack_id
        self.reason = reason
        super().__init__(f"block {block_id} in pack {pack_id} is corrupt: {reason}")


class MissingBlockError(IntegrityError):
    def __init__(self, block_ids: list[str]) -> None:
        self.block_ids = block_ids
        shown = ", ".join(block_ids[:5]) + (" ..." if len(block_ids) > 5 else "")
        super().__init__(f"{len(block_ids)} referenced block(s) not stored: {shown}")


class UnreadableBlockError(IntegrityError):
    """The block store raised an I/O error reading a block's pack (a failing disk, a
    lost mount). The bytes are not known to be bad: a later read may succeed. The
    ``OSError`` is the ``__cause__``."""

    def __init__(self, block_id: str, pack_id: str, reason: str) -> None:
        self.block_id = block_id
        self.pack_id = pack_id
        self.reason = reason
        super().__init__(f"block {block_id} in pack {pack_id} could not be read: {reason}")


class UploadError(CkptStoreError):
    http_status = 422
    exit_code = 5
    code = "upload_error"


class BlockHashMismatch(UploadError):
    def __init__(self, claimed_id: str, actual_id: str) -> None:
        self.claimed_id = claimed_id
        self.actual_id = actual_id
        super().__init__(f"block sent as {claimed_id} hashes to {actual_id}")


class BlocksNotUploaded(UploadError):
    def __init__(self, block_ids: list[str]) -> None:
        self.block_ids = block_ids
        shown = ", ".join(block_ids[:5]) + (" ..." if len(block_ids) > 5 else "")
        super().__init__(
            f"manifest names {len(block_ids)} block(s) neither stored nor uploaded: {shown}"
        )


class DeltaBaseUnavailable(UploadError):
    """A block sent as a delta on a base block that this upload may not use: one the
    tenant's checkpoints do not reference and the upload did not send. The same answer
    whether the base is absent or another tenant's, so it tells nothing about either."""

    code = "delta_base_unavailable"

    def __init__(self, block_id: str, base_id: str) -> None:
        self.block_id = block_id
        self.base_id = base_id
        super().__init__(
            f"block {block_id} is sent as a delta on {base_id}, which is not a block of"
            " this tenant's checkpoints nor of this upload: send it whole"
        )


class DeltaBasesTooLarge(DeltaBaseUnavailable):
    """A batch whose deltas name more bytes of base blocks than a batch may hold: the
    server would read them all into memory to rebuild the batch. Send those blocks
    whole, or in smaller batches."""

    code = "delta_bases_too_large"

    def __init__(self, block_id: str, base_id: str, limit: int) -> None:
        super().__init__(block_id, base_id)
        self.limit = limit
        Exception.__init__(
            self,
            f"block {block_id} is sent as a delta on {base_id}, past the {limit} bytes of"
            " base blocks a batch may name: send it whole or in a smaller batch",
        )


class UndecodableBlock(UploadError):
    """A block sent encoded whose payload does not decode by the codec it names."""

    code = "undecodable_block"

    def __init__(self, block_id: str, codec: int, problem: str) -> None:
        self.block_id = block_id
        self.codec = codec
        self.problem = problem
        super().__init__(f"block {block_id} does not decode by codec {codec}: {problem}")


class FormatError(CkptStoreError):
    """Data written in a format version or codec this code does not know."""

    exit_code = 6
    code = "format_error"


class StorageFull(CkptStoreError):
    """The store could not write: its disk or quota is full. Nothing half-written stays
    visible; a retry only helps once space is freed."""

    http_status = 507
    exit_code = 12
    code = "insufficient_storage"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__("the store's disk is full" + (f" ({detail})" if detail else ""))


class RemoteError(CkptStoreError):
    """An error answer of a ckptstore server: its status, code and message."""

    exit_code = 9

    def __init__(self, status: int, code: str, message: str) -> None:
        self.http_status = status
        self.code = code
        super().__init__(f"server: {message}" if message else f"server answered {status}")


class AuthenticationFailed(RemoteError):
    exit_code = 8


class RemoteNotFound(RemoteError, NotFound):
    exit_code = 3

    def __str__(self) -> str:
        return str(self.args[0])


class RemoteConflict(RemoteError, Conflict):
    exit_code = 7


class RemoteRejected(RemoteError, ValueError):
    exit_code = 2


class ServerUnavailable(RemoteError):
    exit_code = 10


def error_class(name: str) -> type[CkptStoreError] | None:
    """The error class a server's error answer names; None for a name this code does not
    know (a newer server) and for the ``RemoteError`` classes, which only a client raises."""
    pending: list[type[CkptStoreError]] = [CkptStoreError]
    while pending:
        cls = pending.pop()
        if issubclass(cls, RemoteError):
            continue
        if cls.__name__ == name:
            return cls
        pending += cls.__subclasses__()
    return None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


# longer strings and lists are sent cut: the caller has the value already, and an
# error answer naming millions of block ids would be larger than the request
_SCALAR_CHARS = 200
_LIST_ITEMS = 1000


def _json_safe(value: object) -> object:
    """``value`` as JSON can carry it; what it cannot carry faithfully becomes its repr."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value[:_SCALAR_CHARS]
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value[:_LIST_ITEMS]]
    return repr(value)[:_SCALAR_CHARS]
