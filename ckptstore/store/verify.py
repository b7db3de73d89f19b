"""verify: prove every checkpoint is restorable, and name what is not.

Findings are collected, never stopped at: each names the block, its pack and
the checkpoints it affects (directly or through delta bases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter

from ckptstore.errors import CorruptBlockError, MissingBlockError, PackNotFound
from ckptstore.store.catalog.base import BlockRecord
from ckptstore.store.context import StoreContext
from ckptstore.store.packs.entries import decode_entry, load_base


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
    objects = {obj.name: obj.size for obj in ctx.blocks.list()}
    bad: list[Bad] = []
    # blocks come ordered by pack: one pack's records are held at a time
    for pack_id, group in groupby(ctx.catalog.iter_blocks(), key=attrgetter("pack_id")):
        records = list(group)
        size = objects.get(pack_id)
        if size is None:
            bad.extend(("missing_pack", r, "pack object is missing") for r in records)
            if read_data:
                bad.extend(_unreadable_roots(ctx, records, objects, "pack object is missing"))
            continue
        end = max(r.entry_end for r in records)
        if end > size:
            bad.extend(
                ("truncated_pack", r, f"pack is {size} bytes, entries reach {end}")
                for r in records
                if r.entry_end > size
            )
        if read_data:
            bad.extend(_check_pack_data(ctx, pack_id, records, objects, report))
    _attach_checkpoints(ctx, _still_bad(ctx, bad, read_data), report)
    return report


def _still_bad(
    ctx: StoreContext, bad: list[tuple[str, BlockRecord, str]], read_data: bool
) -> list[tuple[str, BlockRecord, str]]:
    """The findings that stand once looked at again: a rebase, compaction or pack merge
    in another thread or process may have moved a block (and deleted its old pack)
    while verify went through the store. A block still where it was found bad stays
    a finding; one that moved is checked again where it is now; one that GC removed
    meanwhile was used by no checkpoint."""
    if not bad:
        return bad
    current = ctx.catalog.get_blocks([record.block_id for _, record, _ in bad])
    standing: list[tuple[str, BlockRecord, str]] = []
    for kind, record, detail in bad:
        now = current.get(record.block_id)
        if now == record:
            standing.append((kind, record, detail))
        elif now is not None and (again := _check_block(ctx, now, read_data)) is not None:
            standing.append(again)
    return standing


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


def _check_pack_data(
    ctx: StoreContext,
    pack_id: str,
    records: list[BlockRecord],
    objects: dict[str, int],
    report: VerifyReport,
) -> list[Bad]:
    """Decode the pack's whole blocks, and from each the chain of deltas resting on it,
    each delta decoded once on its base's bytes (a delta is checked from its chain's
    whole block, not from its own pack). A delta whose base row is gone is reported
    here, with the deltas on it."""
    try:
        pack = memoryview(ctx.blocks.get(pack_id))
    except PackNotFound:
        return [("missing_pack", r, "pack object vanished") for r in records]
    size = objects[pack_id]
    whole = [r for r in records if r.base_id is None]
    has_deltas = {d.base_id for d in ctx.catalog.deltas_on([r.block_id for r in whole])}

    def check(record: BlockRecord) -> _Checked:
        checked = _Checked()
        if record.entry_end > size:  # reported as truncated already
            _check_chain(ctx, record, None, f"pack {pack_id} is truncated", objects, checked)
            return checked
        checked.blocks, checked.bytes = 1, record.raw_len
        try:
            raw = decode_entry(ctx, record, pack[record.offset : record.entry_end])
        except CorruptBlockError as exc:
            checked.bad.append(("corrupt_block", record, exc.reason))
            _check_chain(ctx, record, None, str(exc), objects, checked)
            return checked
        if record.block_id in has_deltas:
            _check_chain(ctx, record, raw, "", objects, checked)
        return checked

    results = list(ctx.pool.map(check, whole))
    results.append(_check_lost_bases(ctx, [r for r in records if r.base_id], objects))
    report.blocks_checked += sum(c.blocks for c in results)
    report.bytes_checked += sum(c.bytes for c in results)
    return [bad for checked in results for bad in checked.bad]


def _check_chain(
    ctx: StoreContext,
    base: BlockRecord,
    raw: bytes | memoryview | None,
    error: str,
    objects: dict[str, int],
    checked: _Checked,
) -> None:
    """Check every delta resting on ``base`` (its bytes ``raw``, or None with ``error``
    when they could not be read), and those resting on them, depth first: one chain's
    bytes in memory at a time."""
    for delta in ctx.catalog.deltas_on([base.block_id]):
        if raw is None:
            detail = f"its delta base {base.block_id.hex()} is unreadable: {error}"
            checked.bad.append(("corrupt_base", delta, detail))
            _check_chain(ctx, delta, None, error, objects, checked)
            continue
        size = objects.get(delta.pack_id)
        if size is None or delta.entry_end > size:  # reported with its pack already
            _check_chain(ctx, delta, None, f"pack {delta.pack_id} is damaged", objects, checked)
            continue
        checked.blocks += 1
        checked.bytes += delta.raw_len
        try:
            entry = ctx.blocks.get(delta.pack_id, delta.offset, delta.entry_len)
            decoded = decode_entry(ctx, delta, entry, raw)
        except (CorruptBlockError, PackNotFound, OSError) as exc:
            if isinstance(exc, CorruptBlockError):
                checked.bad.append(("corrupt_block", delta, exc.reason))
            else:
                checked.bad.append(("missing_pack", delta, f"pack object vanished: {exc}"))
            _check_chain(ctx, delta, None, str(exc), objects, checked)
            continue
        _check_chain(ctx, delta, decoded, "", objects, checked)


def _unreadable_roots(
    ctx: StoreContext, records: list[BlockRecord], objects: dict[str, int], error: str
) -> list[Bad]:
    """The deltas resting, at any depth, on the whole blocks among ``records``, whose
    bytes cannot be read (``error``)."""
    checked = _Checked()
    for record in records:
        if record.base_id is None:
            _check_chain(ctx, record, None, error, objects, checked)
    return checked.bad


def _check_lost_bases(
    ctx: StoreContext, deltas: list[BlockRecord], objects: dict[str, int]
) -> _Checked:
    """The deltas among a pack's blocks whose base has no row (no chain reaches them),
    and the deltas resting on them."""
    checked = _Checked()
    present = ctx.catalog.get_blocks([d.base_id for d in deltas if d.base_id is not None])
    for delta in deltas:
        if delta.base_id is not None and delta.base_id not in present:
            missing = MissingBlockError([delta.base_id.hex()])
            detail = f"its delta base {delta.base_id.hex()} is unreadable: {missing}"
            checked.bad.append(("corrupt_base", delta, detail))
            _check_chain(ctx, delta, None, str(missing), objects, checked)
    return checked


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
