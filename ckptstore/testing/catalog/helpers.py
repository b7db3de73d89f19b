"""What the catalog test classes share: ids, records and a fixture to add blocks."""

from __future__ import annotations

from typing import Any, TypeVar

from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.records import BlockRecord, CheckpointRecord

NOW = 1_700_000_000.0
TTL = 3600.0
# Sizes of a pack's header and of each entry's header, as the engine writes them; to a
# catalog they are only numbers to add up.
PACK_HEADER = 16
ENTRY_HEADER = 76

T = TypeVar("T")


def bid(n: int) -> bytes:
    """A block id whose first 8 bytes hold ``n`` (ids in the order of ``n``): ids differ
    in the prefix the catalog's index of ids holds, as real ids do."""
    return n.to_bytes(8, "big") + bytes(24)


def block(
    block_id: bytes,
    pack: str,
    offset: int,
    stored: int,
    raw: int,
    codec: int,
    base: bytes | None = None,
    width: int | None = None,
) -> BlockRecord:
    """A block record whose entry has an ENTRY_HEADER-byte header."""
    return BlockRecord(
        block_id, pack, offset, stored, raw, codec, base, header_len=ENTRY_HEADER, width=width
    )


def record(
    n: int,
    pack: str = "pack0001",
    stored: int = 100,
    base: bytes | None = None,
    width: int | None = None,
) -> BlockRecord:
    return block(bid(n), pack, PACK_HEADER + (n % 100) * 200, stored, 1000, 1, base, width)


def present(value: T | None, what: str) -> T:
    """``value``; the test fails, naming ``what``, if the catalog returned None."""
    assert value is not None, f"the catalog has no {what}"
    return value


def stored_block(catalog: Catalog, n: int) -> BlockRecord:
    """The catalog's record of block ``bid(n)``; the test fails if there is none."""
    return present(catalog.get_block(bid(n)), f"block {n}")


def checkpoint(cid: str, job: str = "job", created: float = NOW, **kw: Any) -> CheckpointRecord:
    fields: dict[str, Any] = dict(
        checkpoint_id=cid,
        job_id=job,
        type="automatic",
        name=cid,
        description=None,
        epoch=None,
        step=None,
        metrics={},
        status="ready",
        size_bytes=1000,
        stored_bytes=0,
        created_at=created,
    )
    fields.update(kw)
    return CheckpointRecord(**fields)


class CatalogFixture:
    """Subclasses get a ``catalog`` fixture from the backend's test class."""

    def add(
        self, catalog: Catalog, *numbers: int, holder: str = "h", pack: str = "pack0001"
    ) -> int:
        blocks = [record(n, pack) for n in numbers]
        size = PACK_HEADER + sum(b.entry_len for b in blocks)
        return catalog.add_pack(pack, size, blocks, NOW, holder, NOW + TTL)
