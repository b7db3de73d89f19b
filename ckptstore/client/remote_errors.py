"""An error answer of the server as the exception it describes.

The server names the store's error class and its fields
(``ckptstore/server/errors.py``); the client raises that class with those
fields, so code catching ``CheckpointNotFound`` or ``InvalidArgument`` behaves
the same on a ``Client`` as on a ``CheckpointStore``. An answer naming no class
this code knows (the HTTP layer's own errors, or a newer server) is a
``RemoteError`` chosen by its status.
"""

from __future__ import annotations

import httpx

from ckptstore.errors import (
    AuthenticationFailed,
    CkptStoreError,
    RemoteConflict,
    RemoteError,
    RemoteNotFound,
    RemoteRejected,
    ServerUnavailable,
    error_class,
)

_BY_STATUS: dict[int, type[RemoteError]] = {
    401: AuthenticationFailed,
    404: RemoteNotFound,
    409: RemoteConflict,
}
RETRY_STATUSES = (429,)  # besides 5xx: "too many requests" asks to come back later


def error_of(response: httpx.Response) -> CkptStoreError:
    """The exception an error answer describes; ``ServerUnavailable`` for the answers
    worth retrying (5xx naming no store error, 429)."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        error, code, message = {}, "http_error", response.text[:200]
    cls = error_class(str(error.get("type", "")))
    fields = error.get("fields")
    if cls is not None and isinstance(fields, dict):
        return cls.from_wire(message, fields)
    status = response.status_code
    if status >= 500 or status in RETRY_STATUSES:
        return ServerUnavailable(status, code, message)
    return _BY_STATUS.get(status, RemoteRejected)(status, code, message)
