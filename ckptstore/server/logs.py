"""The server's logs: one structured line per request, JSON where no person reads them.

Signed URLs are redacted in every line: a signature opens a checkpoint for an
hour, so it must not be written to a log that others read.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_SIGNATURE = re.compile(r"(signature=)[^&\s]*")
# the fields a request's log line carries (RequestObserver), besides the message
REQUEST_FIELDS = ("request_id", "tenant", "method", "route", "path", "status", "ms", "bytes")


def redact(text: str) -> str:
    """``text`` with the value of every ``signature=`` query parameter replaced."""
    return _SIGNATURE.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    """A JSON object per line: time (UTC, ISO 8601), level, logger, message and the
    request fields a record carries."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in REQUEST_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Lines for a terminal: time, level, message (redacted)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_config(level: str, *, json_lines: bool | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server and uvicorn: JSON lines unless
    standard error is a terminal (or ``json_lines`` says otherwise)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    formatter = "json" if json_lines else "text"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": formatter,
        "stream": "ext://sys.stderr",
    }
    logger = {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"()": TextFormatter},
        },
        "handlers": {"stderr": handler},
        "loggers": {"ckptstore": logger, "uvicorn": logger, "uvicorn.error": logger},
    }
