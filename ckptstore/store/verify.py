"""verify: prove every checkpoint is restorable, and name what is not.

Findings are collected, never stopped at: each names the block, its pack and
the checkpoints it affects (directly or through delta bases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter

from ckptstore.errors import (
    CorruptBlockError,
    MissingBlockError,
    PackNotFound,
    UnreadableBlockError,
)
from ckptstore.store.catalog.base import BlockRecord
from ckptstore.store.context import StoreContext
from ckptstore.store.packs.entries import MAX_CHAIN, decode_entry, load_base


@dataclass(frozen=True)
class Finding:
    # "missing_block" | "missing_pack" | "truncated_pack" | "corrupt_block" | "corrupt_base"
    # | "bad_manifest"
    kind: str
    block_id: str | None
    pack_id: str | None
    detail: str
    checkpoints: tuple[str, ...] = ()


Bad = tuple[str, BlockRecord, str]  # (kind, block, detail)


@dataclass
class VerifyReport:
    checkpoints: int = 0
    blocks_checked: int = 0
    bytes_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def affected_checkpoints(self) -> list[str]:
        return sorted({ck for finding in self.findings for ck in finding.checkpoints})


def verify_store(ctx: StoreContext, read_data: bool) -> VerifyReport:
    report = VerifyReport(checkpoints=ctx.catalog.stats().checkpoints)
    for checkpoint_id, bid in ctx.catalog.missing_manifest_blocks():
        report.findings.append(
            Finding("missing_block", bid.hex(), None, "no block row", (checkpoint_id,))
        )
    for checkpoint_id, bid, offset, span in ctx.catalog.manifest_gaps():
        report.findings.append(
            Finding(
                "bad_manifest",
                bid.hex(),
                None,
                f"the manifest gives it {span} bytes at offset {offset}, not its length",
                (checkpoint_id,),
            )
        )
    # with read_data each pack is read whole, and its size is what was read
    objects = {} if read_data else {obj.name: obj.size for obj in ctx.blocks.list()}
    bad: list[Bad] = []
    # blocks come ordered by pack: one pack's records are held at a time
    for pack_id, group in groupby(ctx.catalog.iter_blocks(), key=attrgetter("pack_id")):
        records = list(group)
        if read_data:
            bad.extend(_check_pack_data(ctx, pack_id, records, report))
            continue
        size = objects.get(pack_id)
        if size is None:
            bad.extend(("missing_pack", r, "pack object is missing") for r in records)
            continue
        bad.extend(_truncated(records, size))
    _attach_checkpoints(ctx, _still_bad(ctx, bad, read_data), report)
    return report


def _still_bad(
    ctx: StoreContext, bad: list[tuple[str, BlockRecord, str]], read_data: bool
) -> list[tuple[str, BlockRecord, str]]:
    """The findings that stand once looked at again: a rebase, compaction or pack merge
    in another thread or process may have moved a block (and deleted its old pack)
    while verify went through the store. A block still where it was found bad stays
    a finding; one that moved is checked again where it is now; one that GC removed
    meanwhile was used by no checkpoint. A block whose base was unreadable is checked
    again even where it did not move: the finding is about the blocks below it, which
    GC may have stored otherwise meanwhile (a delta on a dead base stored whole, and
    the base removed, while this block rests on it unchanged)."""
    if not bad:
        return bad
    current = ctx.catalog.get_blocks([record.block_id for _, record, _ in bad])
    standing: list[tuple[str, BlockRecord, str]] = []
    listed: dict[str, int] | None = None
    for kind, record, detail in bad:
        now = current.get(record.block_id)
        if now == record and kind == "missing_pack" and not read_data:
            # its pack may have been written after verify listed the objects (an
            # ingest beside it: a pack is stored before its rows): listed again, once
            if listed is None:
                listed = {obj.name: obj.size for obj in ctx.blocks.list()}
            size = listed.get(record.pack_id)
            if size is None:
                standing.append((kind, record, detail))
            else:
                standing.extend(_truncated([record], size))
        elif now == record and kind == "corrupt_base":
            if (again := _recheck_delta(ctx, record)) is not None:
                standing.append(again if again[0] != "corrupt_base" else (kind, record, detail))
        elif now == record:
            standing.append((kind, record, detail))
        elif now is not None and (again := _check_block(ctx, now, read_data)) is not None:
            standing.append(again)
    return standing


def _recheck_delta(ctx: StoreContext, record: BlockRecord) -> Bad | None:
    """A delta whose base was unreadable, checked on the chain of bases the catalog
    gives now, its own entry read alone (one finding per delta: no pack read whole)."""
    try:
        base = load_base(ctx, record)
    except (CorruptBlockError, MissingBlockError, UnreadableBlockError) as exc:
        return ("corrupt_base", record, str(exc))
    try:
        entry = ctx.blocks.get(record.pack_id, record.offset, record.entry_len)
    except PackNotFound:
        return ("missing_pack", record, "pack object is missing")
    if len(entry) < record.entry_len:
        return ("truncated_pack", record, f"pack ends inside the entry at {record.offset}")
    try:
        decode_entry(ctx, record, entry, base)
    except CorruptBlockError as exc:
        return ("corrupt_block", record, exc.reason)
    return None


def _check_block(
    ctx: StoreContext, record: BlockRecord, read_data: bool
) -> tuple[str, BlockRecord, str] | None:
    """One block checked on its own: its pack's bytes read whole."""
    try:
        pack = memoryview(ctx.blocks.get(record.pack_id))
    except PackNotFound:
        return ("missing_pack", record, "pack object is missing")
    if record.entry_end > len(pack):
        return (
            "truncated_pack",
            record,
            f"pack is {len(pack)} bytes, entries reach {record.entry_end}",
        )
    return _check_entry(ctx, record, pack) if read_data else None


def _check_entry(
    ctx: StoreContext, record: BlockRecord, pack: memoryview
) -> tuple[str, BlockRecord, str] | None:
    try:
        base = load_base(ctx, record)
    except (CorruptBlockError, MissingBlockError) as exc:
        base_name = (record.base_id or b"").hex()
        return ("corrupt_base", record, f"its delta base {base_name} is unreadable: {exc}")
    try:
        decode_entry(ctx, record, pack[record.offset : record.entry_end], base)
    except CorruptBlockError as exc:
        return ("corrupt_block", record, exc.reason)
    return None


@dataclass
class _Checked:
    """What one task of a verify with data found and how much it read."""

    bad: list[Bad] = field(default_factory=list)
    blocks: int = 0
    bytes: int = 0


def _truncated(records: list[BlockRecord], size: int) -> list[Bad]:
    """The records whose entries reach past the end of their pack, ``size`` bytes."""
    end = max(r.entry_end for r in records)
    detail = f"pack is {size} bytes, entries reach {end}"
    return [("truncated_pack", r, detail) for r in records if r.entry_end > size]


def _check_pack_data(
    ctx: StoreContext, pack_id: str, records: list[BlockRecord], report: VerifyReport
) -> list[Bad]:
    """Decode the pack's whole blocks, and from each the chain of deltas resting on it,
    each delta decoded once on its base's bytes (a delta is checked from its chain's
    whole block, not from its own pack). A delta whose base row is gone is reported
    here, with the deltas on it."""
    try:
        pack = memoryview(ctx.blocks.get(pack_id))
    except PackNotFound:
        # blocks that moved meanwhile (a rebase or GC deleted the pack after moving
        # them) are checked again where they are (_still_bad); the chains resting on
        # those still pointing here are unreadable
        current = ctx.catalog.get_blocks([r.block_id for r in records])
        stuck = [r for r in records if current.get(r.block_id) == r]
        missing = [("missing_pack", r, "pack object is missing") for r in records]
        return missing + _unreadable_roots(ctx, stuck, "pack object is missing")
    truncated = _truncated(records, len(pack))
    whole = [r for r in records if r.base_id is None]
    has_deltas = {d.base_id for d in ctx.catalog.deltas_on([r.block_id for r in whole])}

    def check(record: BlockRecord) -> _Checked:
        checked = _Checked()
        if record.entry_end > len(pack):  # reported as truncated
            _check_chain(ctx, record, None, f"pack {pack_id} is truncated", checked)
            return checked
        checked.blocks, checked.bytes = 1, record.raw_len
        try:
            raw = decode_entry(ctx, record, pack[record.offset : record.entry_end])
        except CorruptBlockError as exc:
            checked.bad.append(("corrupt_block", record, exc.reason))
            _check_chain(ctx, record, None, str(exc), checked)
            return checked
        if record.block_id in has_deltas:
            _check_chain(ctx, record, raw, "", checked)
        return checked

    results = list(ctx.pool.map(check, whole))
    results.append(_check_lost_bases(ctx, [r for r in records if r.base_id]))
    report.blocks_checked += sum(c.blocks for c in results)
    report.bytes_checked += sum(c.bytes for c in results)
    return truncated + [bad for checked in results for bad in checked.bad]


def _check_chain(
    ctx: StoreContext,
    base: BlockRecord,
    raw: bytes | memoryview | None,
    error: str,
    checked: _Checked,
) -> None:
    """Check every delta resting on ``base`` (its bytes ``raw``, or None with ``error``
    when they could not be read), and those resting on them, depth first: one chain's
    bytes in memory at a time. A delta whose entry cannot be read (its pack missing or
    short) is reported with its pack, not here; the deltas on it are."""
    for delta in ctx.catalog.deltas_on([base.block_id]):
        if raw is None:
            detail = f"its delta base {base.block_id.hex()} is unreadable: {error}"
            checked.bad.append(("corrupt_base", delta, detail))
            _check_chain(ctx, delta, None, error, checked)
            continue
        try:
            delta, entry = _entry(ctx, delta)
        except (PackNotFound, OSError) as exc:
            _check_chain(ctx, delta, None, f"pack {delta.pack_id}: {exc}", checked)
            continue
        if len(entry) < delta.entry_len:
            _check_chain(ctx, delta, None, f"pack {delta.pack_id} is truncated", checked)
            continue
        checked.blocks += 1
        checked.bytes += delta.raw_len
        try:
            decoded = decode_entry(ctx, delta, entry, raw)
        except CorruptBlockError as exc:
            checked.bad.append(("corrupt_block", delta, exc.reason))
            _check_chain(ctx, delta, None, str(exc), checked)
            continue
        _check_chain(ctx, delta, decoded, "", checked)


def _entry(ctx: StoreContext, record: BlockRecord) -> tuple[BlockRecord, bytes]:
    """A block's pack entry, following the block to its new pack if GC moved it since
    its record was read; PackNotFound if its pack is gone and it did not move."""
    try:
        return record, ctx.blocks.get(record.pack_id, record.offset, record.entry_len)
    except PackNotFound:
        moved = ctx.catalog.get_block(record.block_id)
        if moved is None or moved.pack_id == record.pack_id:
            raise
        return moved, ctx.blocks.get(moved.pack_id, moved.offset, moved.entry_len)


def _unreadable_roots(ctx: StoreContext, records: list[BlockRecord], error: str) -> list[Bad]:
    """The deltas resting, at any depth, on the whole blocks among ``records``, whose
    bytes cannot be read (``error``)."""
    checked = _Checked()
    for record in records:
        if record.base_id is None:
            _check_chain(ctx, record, None, error, checked)
    return checked.bad


def _check_lost_bases(ctx: StoreContext, deltas: list[BlockRecord]) -> _Checked:
    """The deltas among a pack's blocks whose base has no row (no chain reaches them),
    and the deltas resting on them."""
    checked = _Checked()
    present = ctx.catalog.get_blocks([d.base_id for d in deltas if d.base_id is not None])
    for delta in deltas:
        if delta.base_id is not None and delta.base_id not in present:
            missing = MissingBlockError([delta.base_id.hex()])
            detail = f"its delta base {delta.base_id.hex()} is unreadable: {missing}"
            checked.bad.append(("corrupt_base", delta, detail))
            _check_chain(ctx, delta, None, str(missing), checked)
    for delta in _rootless(ctx, [d for d in deltas if d.base_id in present]):
        detail = f"its chain of delta bases reaches no whole block in {MAX_CHAIN} steps"
        checked.bad.append(("corrupt_base", delta, detail))
    return checked


def _rootless(ctx: StoreContext, deltas: list[BlockRecord]) -> list[BlockRecord]:
    """Those of ``deltas`` whose chain of bases reaches no whole block in MAX_CHAIN
    steps: a loop, which only a damaged catalog holds. No chain from a whole block
    reaches them, so they are checked here, a level of bases per catalog query. A
    chain that meets a base with no row is left to the check of the delta on it."""
    base_of = {d.block_id: d.base_id for d in deltas if d.base_id is not None}
    for _ in range(MAX_CHAIN):
        if not base_of:
            return []
        found = ctx.catalog.get_blocks(list(set(base_of.values())))
        base_of = {
            block: below
            for block, base in base_of.items()
            if base in found and (below := found[base].base_id) is not None
        }
    return [d for d in deltas if d.block_id in base_of]


def _attach_checkpoints(
    ctx: StoreContext, bad: list[tuple[str, BlockRecord, str]], report: VerifyReport
) -> None:
    users = ctx.catalog.checkpoints_using([record.block_id for _, record, _ in bad])
    for kind, record, detail in bad:
        report.findings.append(
            Finding(
                kind,
                record.block_id.hex(),
                record.pack_id,
                detail,
                tuple(users.get(record.block_id, ())),
            )
        )
