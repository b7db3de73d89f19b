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
    bad: list[tuple[str, BlockRecord, str]] = []  # (kind, block, detail)
    # blocks come ordered by pack: one pack's records are held at a time
    for pack_id, group in groupby(ctx.catalog.iter_blocks(), key=attrgetter("pack_id")):
        records = list(group)
        size = objects.get(pack_id)
        if size is None:
            bad.extend(("missing_pack", r, "pack object is missing") for r in records)
            continue
        end = max(r.entry_end for r in records)
        if end > size:
            bad.extend(
                ("truncated_pack", r, f"pack is {size} bytes, entries reach {end}")
                for r in records
                if r.entry_end > size
            )
        if read_data:
            bad.extend(_check_pack_data(ctx, pack_id, records, size, report))
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


def _check_pack_data(
    ctx: StoreContext, pack_id: str, records: list[BlockRecord], size: int, report: VerifyReport
) -> list[tuple[str, BlockRecord, str]]:
    try:
        pack = memoryview(ctx.blocks.get(pack_id))
    except PackNotFound:
        return [("missing_pack", r, "pack object vanished") for r in records]

    def check(record: BlockRecord) -> tuple[str, BlockRecord, str] | None:
        if record.entry_end > size:
            return None  # reported as truncated already
        return _check_entry(ctx, record, pack)

    results = list(ctx.pool.map(check, records))
    report.blocks_checked += len(records)
    report.bytes_checked += sum(r.raw_len for r in records)
    return [result for result in results if result is not None]


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
