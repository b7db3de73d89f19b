"""Moving a pack's blocks in the SQLite catalog finds each block by its id, not by a
walk of the pack's rows: a compaction or merge holds the write lock for a time that
grows with the blocks moved, not with their square."""

from __future__ import annotations

import dataclasses
from hashlib import sha256

from ckptstore.store.catalog.sqlite import SQLiteCatalog
from ckptstore.testing.catalog.helpers import NOW, TTL, record


def steps_to_relocate(tmp_path, count: int) -> int:
    """The SQLite VM steps (in thousands) of moving ``count`` blocks to another pack."""
    catalog = SQLiteCatalog(tmp_path / f"catalog-{count}.sqlite")
    try:
        blocks = [
            dataclasses.replace(
                record(i + 1),
                block_id=sha256(str(i).encode()).digest(),
                pack_id="pack0001",
                offset=i * 100,
            )
            for i in range(count)
        ]
        catalog.add_pack("pack0001", count * 100 + 100, blocks, NOW, "h", NOW + TTL)
        moved = [dataclasses.replace(b, pack_id="pack0002") for b in blocks]
        steps = [0]

        def count_steps() -> int:
            steps[0] += 1
            return 0

        catalog._conn().set_progress_handler(count_steps, 1000)
        catalog.relocate_blocks("pack0001", "pack0002", count * 100 + 100, moved, NOW)
        catalog._conn().set_progress_handler(None, 0)
        assert {b.pack_id for b in catalog.blocks_in_pack("pack0002")} == {"pack0002"}
        return steps[0]
    finally:
        catalog.close()


def test_relocating_a_pack_costs_in_proportion_to_its_blocks(tmp_path):
    small, large = steps_to_relocate(tmp_path, 500), steps_to_relocate(tmp_path, 4000)
    assert large < 8 * small * 2, (small, large)  # 8 times the blocks: not 64 times the work
