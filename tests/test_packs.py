"""The pack format can be read without the catalog, and unknown versions are refused."""

from __future__ import annotations

import struct

import pytest

from ckptstore.errors import FormatError
from ckptstore.store.packs.entries import decode_entry
from ckptstore.store.packs.format import HEADER, PACK_MAGIC, PackBuilder, check_header, iter_entries
from tests.conftest import random_bytes


def test_walking_a_stored_pack_finds_every_block_the_catalog_records(store):
    record = store.put("job", random_bytes(3_000_000, seed=1) + b"text " * 100_000)
    by_pack: dict[str, list] = {}
    for _, block in store.context.catalog.manifest(record.checkpoint_id):
        by_pack.setdefault(block.pack_id, []).append(block)
    for pack_id, blocks in by_pack.items():
        entries = {
            e.block_id: (e, payload)
            for e, payload in iter_entries(store.context.blocks.get(pack_id))
        }
        for block in blocks:
            entry, _ = entries[block.block_id]
            assert (entry.offset, entry.stored_len, entry.raw_len, entry.codec) == (
                block.offset,
                block.stored_len,
                block.raw_len,
                block.codec,
            )
            whole = store.context.blocks.get(pack_id, entry.offset, entry.entry_len)
            assert len(decode_entry(store.context, block, whole)) == block.raw_len


def test_builder_reuses_a_buffer_and_grows_it_when_needed():
    builder = PackBuilder(bytearray(b"old contents that must not leak" * 2))
    builder.add(b"\x01" * 32, 0, 5, b"hello")
    builder.add(b"\x02" * 32, 0, 100, b"x" * 100, base_id=b"\x01" * 32)
    (first, one), (second, two) = list(iter_entries(builder.getbuffer()))
    assert bytes(one) == b"hello" and bytes(two) == b"x" * 100
    assert first.base_id is None and second.base_id == b"\x01" * 32


@pytest.mark.parametrize(
    "header, message",
    [
        (b"NOTAPACK" + bytes(8), "not a ckptstore pack"),
        (struct.pack("<8sHHI", PACK_MAGIC, 99, 0, 0), "version 99"),
        (b"CKPT", "shorter than its header"),
    ],
)
def test_unknown_packs_are_refused(header, message):
    with pytest.raises(FormatError, match=message):
        check_header(header)
    assert HEADER.size == 16
