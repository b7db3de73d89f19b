"""Counterparts: for each block of bytes that are not a tensor's (pickled state, JSON,
tokenizer files) in a checkpoint, the block at the same place in a newer checkpoint
of the job, which the rebase stores it as a delta on (codec 8).

The same place is the same offset in the file of the same path (for a checkpoint of
one file, in that file, whatever its name), shifted by what was inserted or deleted
before it: blocks cut by content come back whole after an edit, so each block that
both checkpoints hold says how far the bytes after it moved. A block is paired with
the newer block that covers its middle, once shifted, unless that block is a
tensor's: a tensor's bytes hold nothing of a zip header or a pickle, and zstd
would read its whole block as a prefix to encode a few bytes against it (a
small header whose place moved into a tensor, as happens in a torch.save file
at every save; none of them paid).

A block stored raw (codec 0) did not compress alone: a delta helps it only where
the newer file holds the same bytes, which then shows as blocks both files hold.
In a file where they hold none (a compressed or encrypted file written anew each
save), such blocks are not paired, so a rebase does not read and compress them
for nothing.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.records import BlockRecord, FileRecord
from ckptstore.store.codecs.ids import Codec
from ckptstore.store.files import files_of


@dataclass(frozen=True)
class Placed:
    """A checkpoint's blocks (``(logical offset, block)`` in order) and its files."""

    manifest: list[tuple[int, BlockRecord]]
    files: list[FileRecord]
    single_file: bool  # a checkpoint of one file: its file is paired whatever its name


def placed(catalog: Catalog, checkpoint_id: str) -> Placed:
    """A checkpoint's blocks and files, from the catalog; raises CheckpointNotFound."""
    record = catalog.get_checkpoint(checkpoint_id)
    files = files_of(record, catalog.files(checkpoint_id))
    return Placed(catalog.manifest(checkpoint_id), files, record.layout == "file")


def counterparts(
    old: Placed, new: Placed, tensor_ids: set[bytes], *, any_storage: bool = False
) -> list[tuple[BlockRecord, BlockRecord]]:
    """``(block of old, block of new at its place)`` for each whole block of ``old``
    that is neither a tensor's (``tensor_ids``: the tensor blocks of either
    checkpoint) nor held by ``new``, paired with a whole block that is not a
    tensor's either. ``any_storage``: blocks stored as deltas too, on either side (a pull
    sends a delta on the block a client holds, whatever the store keeps)."""
    found: list[tuple[BlockRecord, BlockRecord]] = []
    paired: set[bytes] = set()  # a block the file holds twice is re-encoded once
    for old_file, new_file in _paired_files(old, new):
        old_blocks = _blocks_in(old, old_file)
        new_blocks = _blocks_in(new, new_file)
        if not new_blocks:
            continue
        starts = [start for start, _ in new_blocks]
        new_at: dict[bytes, int] = {}
        for start, record in new_blocks:
            new_at.setdefault(record.block_id, start)
        shift = 0
        shared = any(record.block_id in new_at for _, record in old_blocks)
        for start, record in old_blocks:
            moved_to = new_at.get(record.block_id)
            if moved_to is not None:
                shift = moved_to - start
                continue
            if (record.base_id is not None and not any_storage) or record.block_id in tensor_ids:
                continue
            if record.block_id in paired or (record.codec == Codec.RAW and not shared):
                continue
            middle = min(max(start + shift + record.raw_len // 2, 0), new_file.size_bytes - 1)
            target = new_blocks[bisect.bisect_right(starts, middle) - 1][1]
            if target.block_id in tensor_ids:
                continue
            if target.base_id is None or any_storage:
                found.append((record, target))
                paired.add(record.block_id)
    return found


def _paired_files(old: Placed, new: Placed) -> list[tuple[FileRecord, FileRecord]]:
    if old.single_file and new.single_file and len(old.files) == len(new.files) == 1:
        return [(old.files[0], new.files[0])]
    by_path = {f.path: f for f in new.files}
    return [(f, by_path[f.path]) for f in old.files if f.path in by_path]


def _blocks_in(placed: Placed, file: FileRecord) -> list[tuple[int, BlockRecord]]:
    """The blocks of ``file`` (no block spans two files), by offset within it."""
    manifest = placed.manifest
    first = bisect.bisect_left(manifest, file.offset, key=lambda entry: entry[0])
    end = file.offset + file.size_bytes
    last = bisect.bisect_left(manifest, end, lo=first, key=lambda entry: entry[0])
    return [(at - file.offset, record) for at, record in manifest[first:last]]
