"""What every engine operation needs, built once by CheckpointStore.open."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ckptstore.errors import FormatError
from ckptstore.store.blockstore.base import BlockStore
from ckptstore.store.catalog.base import Catalog, ServiceRecords
from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER, ChunkerParams
from ckptstore.store.codecs.block import DELTA_GROUP_LOG, EXPONENT_GROUP_LOG, BlockCodec
from ckptstore.store.codecs.frames import DEFAULT_ZSTD_LEVEL
from ckptstore.store.packs.basecache import BaseCache

Clock = Callable[[], float]
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoreConfig:
    """Tunables of an engine instance (not persisted: changing them keeps old data readable)."""

    zstd_level: int = DEFAULT_ZSTD_LEVEL
    byte_planes: bool = True  # try byte-plane encoding for numeric blocks
    # An older checkpoint's tensor blocks become deltas on the same slot of the next
    # one (rebase.py), at most this many deltas deep (a read decodes up to this + 1
    # payloads: ratio against restore speed of old checkpoints, bench: corpora);
    # 0 turns deltas off.
    delta_max_depth: int = 8
    # True (with deltas on): a new tensor block is stored as its raw bytes (codec 0)
    # and encoded once, by the rebase that follows the next save: as a delta where one
    # pays, else whole with the full codec, sparing the whole encoding a put gives
    # blocks that become deltas (docs/design.md, "Alternatives measured for the
    # ingest"). The newest checkpoints' raw blocks are encoded whole when the store
    # closes (``CheckpointStore.encode_deferred``) or by GC past its grace time.
    # Off by default: until then the newest takes its raw size on disk, each pull of
    # it is encoded on the fly, and a tenant's stored bytes would tell it whether
    # another tenant stored the same blocks first; for one training process that
    # owns its store it saves CPU on every save.
    defer_whole_encode: bool = False
    # A delta's elements are grouped by their base's exponent, at least 2**this many
    # per group (each group less its median difference), where that makes it
    # GROUPING_MIN_GAIN smaller: fewer bytes, most on bf16, but a grouped delta decodes
    # slower, so old checkpoints restore slower (docs/performance.md, codec 6); 0 turns
    # grouping off.
    delta_group_log: int = DELTA_GROUP_LOG
    # A whole tensor block's elements are grouped by their own exponent, at least
    # 2**this many per group: fewer bytes (docs/performance.md, codec 7); 0 turns it off.
    exponent_group_log: int = EXPONENT_GROUP_LOG
    # Raw bytes of just-ingested tensor blocks kept for the rebases (basecache.py);
    # 0 turns the cache off, and rebases then decode the blocks they need. The
    # largest part of an ingest's memory: sized so that ingesting the medium corpora
    # stays under the memory goal, at no cost in ratio (bench: old_restore).
    delta_cache_bytes: int = 32 * 1024 * 1024
    pack_target_bytes: int = 32 * 1024 * 1024
    workers: int = max(2, min(8, os.cpu_count() or 2))
    lease_ttl_s: float = 3600.0
    gc_grace_s: float = 3600.0
    # A pending checkpoint that got no data for this long (its trainer or uploader is
    # gone) is deleted by GC, and its upload's leases end.
    pending_ttl_s: float = 24 * 3600.0
    compact_dead_fraction: float = 0.05
    readahead_bytes: int = 32 * 1024 * 1024  # decoded ahead of a reader (bench: corpora)
    window_bytes: int = 4 * 1024 * 1024  # stream bytes cut and hashed per step (bench)
    chunker: ChunkerParams = DEFAULT_CHUNKER  # used when a store is created; then persisted


@dataclass
class StoreContext:
    catalog: Catalog
    blocks: BlockStore
    codec: BlockCodec
    chunker: ChunkerParams
    clock: Clock
    pool: ThreadPoolExecutor
    config: StoreConfig
    base_cache: BaseCache = field(default_factory=lambda: BaseCache(0))


def build_context(
    catalog: Catalog, blocks: BlockStore, config: StoreConfig, clock: Clock
) -> StoreContext:
    """The context of a store: its format version checked, its chunker as persisted."""
    return StoreContext(
        catalog=catalog,
        blocks=blocks,
        codec=BlockCodec(
            config.zstd_level,
            config.byte_planes,
            config.delta_group_log,
            config.exponent_group_log,
        ),
        chunker=_persisted_chunker(catalog, config.chunker),
        clock=clock,
        pool=ThreadPoolExecutor(config.workers, thread_name_prefix="ckptstore"),
        config=config,
        base_cache=BaseCache(config.delta_cache_bytes),
    )


def _persisted_chunker(settings: ServiceRecords, for_new_store: ChunkerParams) -> ChunkerParams:
    """The store's chunker parameters: recorded at creation, never changed after."""
    version = int(settings.set_setting_if_absent("format_version", str(FORMAT_VERSION)))
    if version != FORMAT_VERSION:
        raise FormatError(f"store format version {version}; this ckptstore reads {FORMAT_VERSION}")
    stored = json.loads(
        settings.set_setting_if_absent("chunker", json.dumps(for_new_store.as_dict()))
    )
    try:
        return ChunkerParams.from_dict(stored)
    except (ValueError, KeyError) as exc:
        raise FormatError(f"store chunker settings {stored}: {exc}") from None
