"""Access logs without credentials: a signed URL's signature opens a checkpoint for an
hour, so it must not be written to a log that others read."""

from __future__ import annotations

import logging
import re

_SIGNATURE = re.compile(r"(signature=)[^&\s]*")


def redact(text: str) -> str:
    """``text`` with the value of every ``signature=`` query parameter replaced."""
    return _SIGNATURE.sub(r"\1[redacted]", text)


class RedactSignatures(logging.Filter):
    """Rewrites the request line of uvicorn's access records (their arguments are
    client, method, path with query, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact_access_log(logger: logging.Logger | None = None) -> None:
    """Install the filter on uvicorn's access logger (once)."""
    logger = logger or logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSignatures) for f in logger.filters):
        logger.addFilter(RedactSignatures())
