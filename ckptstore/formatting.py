"""How sizes and times are shown to people (the API's own conventions)."""

from __future__ import annotations

import calendar
import time
from functools import lru_cache

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


# Both are pure and called for every checkpoint of every list answer, with values that
# repeat (the page's checkpoints, one expiry per second): the cache spares the formatting.
@lru_cache(maxsize=4096)
def human_size(n_bytes: int) -> str:
    """Decimal units with one decimal, as the checkpoint API shows them: ``2.3GB``."""
    value = float(n_bytes)
    for unit in _UNITS:
        if value < 1000 or unit == _UNITS[-1]:
            return f"{n_bytes}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


@lru_cache(maxsize=4096)
def iso_time(seconds: float) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2024-01-15T20:30:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def parse_iso_time(text: str) -> float:
    """Unix seconds of an ``iso_time`` string."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
