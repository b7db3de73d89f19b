"""Range headers: the satisfiable ones select bytes, the others are refused or ignored
as RFC 9110 says, and no header makes the parser fail."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptstore.server.ranges import RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(
    "header, size, span",
    [
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=90-", 100, (90, 100)),
        ("bytes=-5", 100, (95, 100)),
        ("bytes=-500", 100, (0, 100)),
        ("bytes=10-1000", 100, (10, 100)),
        ("bytes=0-" + "9" * 4301, 100, (0, 100)),
        ("bytes=-" + "9" * 4301, 100, (0, 100)),
        ("bytes=0,5", 100, None),
        ("items=0-5", 100, None),
        (None, 100, None),
    ],
)
def test_parse_range_selects_the_bytes_asked_for(header, size, span):
    assert parse_range(header, size) == span


@pytest.mark.parametrize(
    "header, size",
    [
        ("bytes=100-", 100),
        ("bytes=" + "9" * 4301 + "-", 100),
        ("bytes=-0", 100),
        ("bytes=-5", 0),
        ("bytes=0-", 0),
        ("bytes=5-4", 100),
    ],
)
def test_parse_range_refuses_what_selects_nothing(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@given(st.text(max_size=60), st.integers(min_value=0, max_value=2**40))
def test_parse_range_never_fails_otherwise(header, size):
    try:
        span = parse_range("bytes=" + header, size)
    except RangeNotSatisfiable:
        return
    if span is not None:
        start, end = span
        assert 0 <= start < end <= size
