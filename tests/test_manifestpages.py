"""Manifest pages: the compact form of a checkpoint's block list in the catalog."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptstore.store.catalog.manifestpages import (
    PAGE_ENTRIES,
    ManifestPageError,
    decode_page,
    encode_page,
    encode_pages,
    key_ranges,
)

entries = st.lists(
    st.tuples(
        st.integers(-(2**40), 2**62),
        st.integers(0, 2**62),
        st.none() | st.text(max_size=40),
    ),
    max_size=300,
)


@given(entries)
def test_manifestpages_round_trip(found):
    keys = [e[0] for e in found]
    offsets = [e[1] for e in found]
    slots = [e[2] for e in found]
    page = decode_page(encode_page(keys, offsets, slots))
    assert (page.keys, page.offsets, page.slots) == (keys, offsets, slots)


def test_manifestpages_consecutive_blocks_cost_few_bytes_each():
    count = PAGE_ENTRIES
    keys = list(range(1000, 1000 + count))
    offsets = [i * (1 << 20) for i in range(count)]
    slots = [f"model.layers.{i // 8}.mlp.weight#{i % 8}" for i in range(count)]
    assert len(encode_page(keys, offsets, slots)) < 2 * count


def test_manifestpages_split_into_numbered_pages():
    count = 2 * PAGE_ENTRIES + 3
    pages = list(encode_pages(list(range(count)), list(range(count)), [None] * count))
    assert [number for number, _ in pages] == [0, 1, 2]
    decoded = [key for _, data in pages for key in decode_page(data).keys]
    assert decoded == list(range(count))


@pytest.mark.parametrize("damage", [lambda d: d[:-3], lambda d: b"\x09" + d[1:], lambda d: d[:3]])
def test_manifestpages_damaged_page_is_refused(damage):
    data = encode_page([1, 2, 3], [0, 10, 20], ["a#0", None, "b#0"])
    with pytest.raises(ManifestPageError):
        decode_page(damage(data))


def test_manifestpages_key_ranges_cover_runs():
    assert list(key_ranges([5, 1, 2, 3, 500, 501, 3])) == [(1, 5), (500, 501)]
    assert list(key_ranges([])) == []


def test_manifestpages_a_damaged_page_is_refused_not_read_as_other_entries():
    """A page's keys are differences: a damaged byte read without complaint would name
    other blocks, which hash right. Every single-bit change is refused or harmless."""
    keys = list(range(1000, 1300))
    offsets = [i * 1_048_576 for i in range(300)]
    slots = [f"model.layers.{i // 8}.weight#{i % 8}" for i in range(300)]
    data = encode_page(keys, offsets, slots)
    for position in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[position] ^= 1 << bit
            try:
                page = decode_page(bytes(damaged))
            except ManifestPageError:
                continue
            assert (page.keys, page.offsets, page.slots) == (keys, offsets, slots)


def test_manifestpages_pages_written_without_a_checksum_still_read():
    import zstandard

    data = encode_page([5, 6, 9], [0, 10, 20], ["a#0", None, "b#0"])
    body = zstandard.ZstdDecompressor().decompress(data[5:])
    unchecked = data[:5] + zstandard.ZstdCompressor(level=3).compress(body)
    page = decode_page(unchecked)
    assert (page.keys, page.offsets, page.slots) == ([5, 6, 9], [0, 10, 20], ["a#0", None, "b#0"])
