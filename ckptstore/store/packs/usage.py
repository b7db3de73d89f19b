"""Whether a pack is worth reclaiming: how many of its bytes are dead.

The catalog knows each pack's size and its live entries' bytes; the pack's own
header, which is neither, is the one fact of the layout this needs.
"""

from __future__ import annotations

from ckptstore.store.catalog.records import PackUsage
from ckptstore.store.packs.format import HEADER


def dead_bytes(usage: PackUsage, dying: int = 0) -> int:
    """Bytes of the pack in no live entry, once ``dying`` more of its live bytes die."""
    return usage.size - HEADER.size - (usage.live_bytes - dying)


def reclaimable(usage: PackUsage, dead_fraction: float, dying: int = 0) -> bool:
    """Whether GC deletes or compacts this pack (nothing live, or more than
    ``dead_fraction`` of it dead) once ``dying`` more of its live bytes die."""
    live = usage.live_bytes - dying
    return live <= 0 or dead_bytes(usage, dying) > dead_fraction * usage.size
