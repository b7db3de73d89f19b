"""SHA-256 of files the store did not read as a stream: a dedup-aware upload sends
blocks, each checked against its BLAKE3 id, and a client's claim about the SHA-256
of the whole would be only a claim. After such a commit the store reads the
checkpoint back in the background and records the digests of what it holds
(docs/design.md, "SHA-256 of uploads")."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from ckptstore.store.context import StoreContext
from ckptstore.store.files import checkpoint_digest
from ckptstore.store.restore import CheckpointReader


def digest_checkpoint(ctx: StoreContext, checkpoint_id: str) -> None:
    """Compute and record the SHA-256 of the checkpoint's files that lack it, and then
    the checkpoint's own."""
    catalog = ctx.catalog
    record = catalog.get_checkpoint(checkpoint_id)
    files = catalog.files(checkpoint_id)
    if all(f.sha256 is not None for f in files):
        return
    digests: dict[str, str] = {}
    with CheckpointReader(ctx, catalog.manifest(checkpoint_id), record.size_bytes) as reader:
        for f in files:
            if f.sha256 is None:
                hasher = hashlib.sha256()
                for view in reader.iter_range(f.offset, f.offset + f.size_bytes):
                    hasher.update(view)
                digests[f.path] = hasher.hexdigest()
    complete = [replace(f, sha256=digests.get(f.path, f.sha256)) for f in files]
    digest = checkpoint_digest(record.layout, complete)
    assert digest is not None
    catalog.record_digests(checkpoint_id, digests, digest)
