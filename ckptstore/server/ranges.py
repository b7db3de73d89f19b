"""HTTP Range requests (RFC 9110): one byte range, or the whole body."""

from __future__ import annotations

import re

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# Positions past any size a store can hold stand for "beyond the end": parsing a
# header's thousands of digits into an int would cost time for nothing (and Python
# refuses past 4,300 digits).
_MAX_DIGITS = 18
_BEYOND = 10**_MAX_DIGITS


class RangeNotSatisfiable(Exception):
    pass


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _BEYOND if len(digits) > _MAX_DIGITS else int(digits)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` for a single satisfiable range; None to send everything.

    Several ranges, or a header that is not a byte range, are ignored as RFC 9110
    allows (the whole body is sent); an unsatisfiable range raises, and so does any
    range of an empty body (RFC 9110 14.1.2: none of it can be selected).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = _position(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - length), size
    start = _position(first)
    end = size if not last else min(_position(last) + 1, size)
    if start >= size or end <= start:
        raise RangeNotSatisfiable
    return start, end
