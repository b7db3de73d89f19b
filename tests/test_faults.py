"""I/O errors (ENOSPC, EIO) at chosen block-store calls: every operation fails with a
clear error and leaves nothing half-committed.

Each case builds a store over a FaultyBlockStore, stores what must survive, arms one
fault and runs one operation: ingest of a tensor file or of opaque bytes, a
dedup-aware upload, the rebase after a second save, GC with compaction, or a
restore. The operation must fail with the errno (or the store's own error class).
Then, with the faults switched off: the store verifies, every checkpoint
acknowledged before restores bit-exact, the failed checkpoint does not exist (an
ingest) or is still pending (an upload), no lease outlives its TTL, and once lease
and grace period have passed GC leaves exactly the packs the catalog knows and no
unreferenced block. Last, the same operation runs again and succeeds.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ckptstore import CheckpointStore
from ckptstore.errors import UnreadableBlockError
from ckptstore.store.blockstore import LocalBlockStore
from ckptstore.store.blockstore.durable import TEMP_MARKER
from ckptstore.store.catalog import SQLiteCatalog
from ckptstore.store.codecs.ids import Codec
from ckptstore.testing.clock import FakeClock
from ckptstore.testing.faults import Fault, FaultyBlockStore
from ckptstore.testing.formats import safetensors_bytes
from tests.conftest import client_blocks, random_bytes, restore_bytes
from tests.test_deltas import CONFIG, model

ERRNOS = [pytest.param(errno.ENOSPC, id="ENOSPC"), pytest.param(errno.EIO, id="EIO")]


class Rig:
    """A store in ``root`` whose block store fails where ``blocks`` is armed to; its
    clock starts at the real time, so that GC compares it with the packs' mtimes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = FakeClock(time.time())
        self.local = LocalBlockStore(root / "packs")
        self.blocks = FaultyBlockStore(self.local)
        self.store = self._open()

    def _open(self) -> CheckpointStore:
        catalog = SQLiteCatalog(self.root / "catalog.sqlite")
        return CheckpointStore(
            catalog, self.blocks, config=CONFIG, clock=self.clock, lock_dir=self.root
        )

    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    def count(self, query: str, *args: object) -> int:
        with sqlite3.connect(self.root / "catalog.sqlite") as conn:
            found: int = conn.execute(query, args).fetchone()[0]
        return found

    def temp_files(self) -> list[Path]:
        return list(self.local.root.glob(f"*/*{TEMP_MARKER}*"))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path / "store")
    yield made
    made.blocks.disarm()
    made.store.close()


@dataclass
class Operation:
    """One operation under test: ``setup`` stores what must survive and returns it
    (checkpoint id -> bytes); ``run`` is the operation, run with the fault armed and
    again as the retry; ``expect`` the errors it may raise."""

    setup: Callable[[Rig], dict[str, bytes]]
    run: Callable[[Rig], None]
    expect: tuple[type[Exception], ...] = (OSError,)
    state: dict[str, object] = field(default_factory=dict)


# -- the operations -------------------------------------------------------------------
TENSORS_0 = safetensors_bytes(model(1, 0))
TENSORS_1 = safetensors_bytes(model(1, 1))
SHARED = random_bytes(1_200_000, seed=1)
OPAQUE_0 = SHARED + random_bytes(300_000, seed=2)
OPAQUE_1 = random_bytes(700_000, seed=3) + SHARED[:800_000] + random_bytes(900_000, seed=4)


def put_tensors() -> Operation:
    """Ingest a safetensors file (two packs and more) beside an earlier one of its job."""

    def setup(rig: Rig) -> dict[str, bytes]:
        return {rig.store.put("run", TENSORS_0, step=0).checkpoint_id: TENSORS_0}

    def run(rig: Rig) -> None:
        op.state["made"] = rig.store.put("run", TENSORS_1, step=1).checkpoint_id

    op = Operation(setup, run)
    return op


def put_opaque() -> Operation:
    """Ingest opaque bytes of several packs, part of them stored already (leased)."""

    def setup(rig: Rig) -> dict[str, bytes]:
        return {rig.store.put("run", OPAQUE_0).checkpoint_id: OPAQUE_0}

    def run(rig: Rig) -> None:
        op.state["made"] = rig.store.put("run", OPAQUE_1).checkpoint_id

    op = Operation(setup, run)
    return op


def upload() -> Operation:
    """A dedup-aware upload of a pending checkpoint: ``missing``, a batch then ``flush``
    (as the server runs each request), a second batch, then ``commit`` (which flushes
    it). Each step may be the one that fails."""

    def setup(rig: Rig) -> dict[str, bytes]:
        kept = rig.store.put("run", OPAQUE_0).checkpoint_id
        op.state["pending"] = rig.store.create_pending("run").checkpoint_id
        op.state["blocks"] = client_blocks(rig.store, OPAQUE_1)
        return {kept: OPAQUE_0}

    def run(rig: Rig) -> None:
        checkpoint_id = str(op.state["pending"])
        blocks: list[tuple[bytes, bytes]] = op.state["blocks"]  # type: ignore[assignment]
        ids = [bid for bid, _ in blocks]
        first = rig.store.resume_upload(checkpoint_id)
        wanted = set(first.missing(ids))
        send = [(bid, data, None, None) for bid, data in blocks if bid in wanted]
        cut = len(send) - 3  # the first batch fills two packs and more; the second is small
        first.put_blocks(send[:cut])
        first.flush()
        second = rig.store.resume_upload(checkpoint_id)
        second.put_blocks(send[cut:])
        second.commit(ids)
        op.state["made"] = checkpoint_id

    op = Operation(setup, run)
    return op


def rebase() -> Operation:
    """The background rebase of the job's first tensor checkpoint onto its second, and
    the compaction that follows it. The fault is armed right after the second commit,
    so it hits the rebase and nothing before; the rebase's error is logged, not raised."""

    def setup(rig: Rig) -> dict[str, bytes]:
        first = rig.store.put("run", TENSORS_0, step=0).checkpoint_id
        op.state["parent"] = first
        return {first: TENSORS_0}

    def run(rig: Rig) -> None:
        catalog = rig.store.context.catalog
        commit = catalog.commit_checkpoint
        faults: tuple[Fault, ...] = op.state.pop("faults", ())  # type: ignore[assignment]

        def commit_then_arm(*args: object, **kwargs: object) -> str | None:
            parent = commit(*args, **kwargs)  # type: ignore[arg-type]
            rig.blocks.arm(*faults)
            return parent

        catalog.commit_checkpoint = commit_then_arm  # type: ignore[method-assign]
        try:
            child = rig.store.put("run", TENSORS_1, step=1).checkpoint_id
            op.state["child"] = child
            rig.store.settle()
        finally:
            del catalog.commit_checkpoint

    op = Operation(setup, run, expect=())
    return op


def gc() -> Operation:
    """GC after deletes past the grace period: a pack deleted whole, packs compacted."""

    def setup(rig: Rig) -> dict[str, bytes]:
        doomed = rig.store.put("run", SHARED + random_bytes(600_000, seed=5))
        kept = {}
        for seed in (6, 7):
            data = random_bytes(500_000, seed=seed) + SHARED
            kept[rig.store.put("run", data).checkpoint_id] = data
        gone = rig.store.put("run", random_bytes(600_000, seed=8))
        rig.store.delete(doomed.checkpoint_id)
        rig.store.delete(gone.checkpoint_id)
        rig.clock.advance(CONFIG.gc_grace_s + 1)
        return kept

    def run(rig: Rig) -> None:
        rig.store.gc()

    return Operation(setup, run)


def restore() -> Operation:
    """Reading a checkpoint of several packs: what is returned before the error must be
    the checkpoint's own bytes."""

    def setup(rig: Rig) -> dict[str, bytes]:
        made = rig.store.put("run", OPAQUE_1).checkpoint_id
        op.state["made"] = made
        return {made: OPAQUE_1}

    def run(rig: Rig) -> None:
        got = bytearray()
        try:
            with rig.store.open_reader(str(op.state["made"])) as reader:
                while piece := reader.read(100_000):
                    got += piece
        finally:
            assert got == OPAQUE_1[: len(got)]  # no wrong bytes, even before an error
        assert got == OPAQUE_1

    op = Operation(setup, run, expect=(UnreadableBlockError,))
    return op


# -- the cases --------------------------------------------------------------------
WRITE_FAULTS = [
    ("write", 1, False, "before"),  # the first piece of the first pack
    ("write", 6, False, "before"),  # a piece of a later pack
    ("commit", 1, False, "before"),  # the first pack cannot be made durable
    ("commit", 2, False, "after"),  # a pack made durable, but reported failed
    ("begin", 2, False, "before"),  # the second pack cannot be started
    ("write", 3, True, "before"),  # the disk fills up and stays full
]
UPLOAD_FAULTS = [
    ("write", 1, False, "before"),  # the first batch
    ("commit", 1, False, "before"),  # its first pack, while it writes the next
    ("commit", 3, False, "before"),  # the first flush
    ("commit", 4, False, "after"),  # the pack the commit flushes, durable but reported failed
    ("write", 10, True, "before"),  # the disk fills up during the first batch
]
REBASE_FAULTS = [
    ("write", 1, False, "before"),  # the delta pack
    ("commit", 1, False, "before"),
    ("commit", 1, False, "after"),  # delta pack durable, blocks not re-pointed
    ("get", 1, False, "before"),  # compaction: reading the live entries
    ("put", 1, False, "before"),  # compaction: the new pack
    ("delete", 1, False, "before"),  # compaction: the old pack, already forgotten
]
GC_FAULTS = [
    ("list", 1, False, "before"),
    ("delete", 1, False, "before"),  # a dead pack, forgotten by the catalog already
    ("get", 1, False, "before"),  # compaction reads the live entries
    ("put", 1, False, "before"),  # ... and writes them to a new pack
    ("put", 1, False, "after"),  # ... which is durable, but reported failed
    ("sweep_incomplete", 1, False, "before"),
]
RESTORE_FAULTS = [("get", n, True, "before") for n in (1, 2, 3, 5, 8)]

OPERATIONS = {
    "put_tensors": put_tensors,
    "put_opaque": put_opaque,
    "upload": upload,
    "rebase": rebase,
    "gc": gc,
    "restore": restore,
}


def cases() -> Iterator[object]:
    plans = [
        ("put_tensors", WRITE_FAULTS),
        ("put_opaque", WRITE_FAULTS),
        ("upload", UPLOAD_FAULTS),
        ("rebase", REBASE_FAULTS),
        ("gc", GC_FAULTS),
    ]
    for name, faults in plans:
        for method, call, every, when in faults:
            for code in ERRNOS:
                (number,) = code.values
                fault = Fault(method, call, number, every, when)
                ident = f"{name}-{method}{call}{'+' if every else ''}-{when}-{code.id}"
                yield pytest.param(name, fault, id=ident)
    for method, call, every, when in RESTORE_FAULTS:  # a read fails with EIO, not ENOSPC
        ident = f"restore-{method}{call}{'+' if every else ''}-{when}-EIO"
        yield pytest.param("restore", Fault(method, call, errno.EIO, every, when), id=ident)


@pytest.mark.parametrize("name, fault", list(cases()))
def test_fault_fails_cleanly_and_leaves_nothing_half_committed(
    rig: Rig, name: str, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    op = OPERATIONS[name]()
    kept = op.setup(rig)
    rig.store.settle()
    if name == "rebase":
        op.state["faults"] = (fault,)
    else:
        rig.blocks.arm(fault)
    with caplog.at_level(logging.ERROR, logger="ckptstore"):
        if op.expect:
            with pytest.raises(op.expect) as raised:
                op.run(rig)
            assert_clear_error(raised.value, fault)
        else:
            op.run(rig)
    assert rig.blocks.injected, "the fault never fired: the case tests nothing"
    rig.blocks.disarm()
    rig.store.settle()

    if name == "rebase":
        assert_rebase_failed_and_logged(rig, op, caplog, fault)
        if fault.method in ("write", "commit"):  # failed before it re-pointed a block
            assert Codec.BIASED_DELTA not in codecs_of(rig, str(op.state["parent"]))
        kept[str(op.state["child"])] = TENSORS_1
    assert_failure_left_nothing_half_done(rig, op, name, kept)
    assert_gc_reclaims_what_failed(rig, kept)

    if name == "rebase":  # retried when the store is next opened
        rig.reopen()
        rig.store.settle()
        assert rig.store.context.catalog.pending_rebases() == []
        assert Codec.BIASED_DELTA in codecs_of(rig, str(op.state["parent"]))
    else:
        op.run(rig)
        rig.store.settle()
        if "made" in op.state:
            made = str(op.state["made"])
            assert rig.store.get(made).status == "ready"
            kept[made] = OPAQUE_1 if name in ("put_opaque", "upload", "restore") else TENSORS_1
    assert_gc_reclaims_what_failed(rig, kept)


def codecs_of(rig: Rig, checkpoint_id: str) -> list[int]:
    return [record.codec for _, record in rig.store.context.catalog.manifest(checkpoint_id)]


def assert_clear_error(error: BaseException, fault: Fault) -> None:
    """The injected OSError with its errno, or the store's error for an unreadable block
    (which names the block and its pack, and keeps the OSError as its cause)."""
    if isinstance(error, UnreadableBlockError):
        assert error.block_id and error.pack_id
        assert isinstance(error.__cause__, OSError) and error.__cause__.errno == fault.errno
        assert str(error.__cause__.errno) in str(error)
    else:
        assert isinstance(error, OSError)
        assert error.errno == fault.errno, error


def assert_rebase_failed_and_logged(
    rig: Rig, op: Operation, caplog: pytest.LogCaptureFixture, fault: Fault
) -> None:
    """The commit stood; the rebase's failure was logged with its errno and the rebase
    is still listed, to run again."""
    (failure,) = [r for r in caplog.records if "rebasing checkpoint" in r.getMessage()]
    assert failure.exc_info is not None
    assert isinstance(failure.exc_info[1], OSError)
    assert failure.exc_info[1].errno == fault.errno
    pending = rig.store.context.catalog.pending_rebases()
    assert pending == [(op.state["child"], op.state["parent"])]


def assert_failure_left_nothing_half_done(
    rig: Rig, op: Operation, name: str, kept: dict[str, bytes]
) -> None:
    """With the faults off: the store verifies, what was acknowledged restores, the
    failed checkpoint is absent (ingest) or pending (upload), no temporary pack is left
    (every pending object was aborted), and an ingest holds no lease any more."""
    report = rig.store.verify(read_data=True)
    assert report.ok, report.findings
    for checkpoint_id, data in kept.items():
        assert restore_bytes(rig.store, checkpoint_id) == data
    listed = {c.checkpoint_id for c in rig.store.list("run", limit=None).checkpoints}
    if name.startswith("put"):
        assert listed == set(kept)  # the failed put made no checkpoint
        assert rig.count("SELECT COUNT(*) FROM leases") == 0
    if name == "upload":
        pending = str(op.state["pending"])
        assert rig.store.get(pending).status == "pending"
        assert listed == {*kept, pending}
    assert rig.temp_files() == []


def assert_gc_reclaims_what_failed(rig: Rig, kept: dict[str, bytes]) -> None:
    """Past every lease and the grace period, GC leaves only the packs the catalog
    knows and no block that no checkpoint references."""
    rig.clock.advance(CONFIG.lease_ttl_s + CONFIG.gc_grace_s + 1)
    assert rig.count("SELECT COUNT(*) FROM leases WHERE expires_at > ?", rig.clock()) == 0
    rig.store.gc()
    rig.store.settle()  # a GC takes up rebases whose claim lapsed: let it finish
    known = {usage.pack_id for usage in rig.store.context.catalog.pack_usage()}
    assert {obj.name for obj in rig.local.list()} == known
    assert rig.count("SELECT COUNT(*) FROM blocks WHERE refcount = 0") == 0
    assert rig.temp_files() == []
    report = rig.store.verify(read_data=True)
    assert report.ok, report.findings
    for checkpoint_id, data in kept.items():
        assert restore_bytes(rig.store, checkpoint_id) == data


@pytest.mark.parametrize("code", ERRNOS)
def test_upload_retried_on_the_same_object_after_a_failed_batch_succeeds(
    rig: Rig, code: int
) -> None:
    """A batch whose first pack cannot be made durable fails; the same Upload then
    reports the blocks of that pack missing again, takes them and commits."""
    rig.store.put("run", OPAQUE_0)
    checkpoint_id = rig.store.create_pending("run").checkpoint_id
    blocks = client_blocks(rig.store, OPAQUE_1)
    ids = [bid for bid, _ in blocks]
    upload = rig.store.resume_upload(checkpoint_id)
    wanted = set(upload.missing(ids))
    rig.blocks.arm(Fault("commit", 1, code))
    with pytest.raises(OSError) as raised:  # the batch fills packs past the failed one
        upload.put_blocks([(bid, data, None, None) for bid, data in blocks if bid in wanted])
    assert raised.value.errno == code
    assert rig.temp_files() == []
    rig.blocks.disarm()
    again = set(upload.missing(ids))
    assert again and again <= wanted
    upload.put_blocks([(bid, data, None, None) for bid, data in blocks if bid in again])
    assert upload.commit(ids).status == "ready"
    assert restore_bytes(rig.store, checkpoint_id) == OPAQUE_1
    assert rig.store.verify(read_data=True).ok


def test_faulty_block_store_fails_exactly_the_chosen_calls(tmp_path: Path) -> None:
    local = LocalBlockStore(tmp_path)
    blocks = FaultyBlockStore(
        local,
        Fault("put", 2, errno.ENOSPC),  # the second put only, before it is made
        Fault("get", 2, errno.EIO, every=True),  # every get from the second
        Fault("commit", 1, errno.EIO, when="after"),  # made, then reported failed
    )
    blocks.put("aaaa", b"1")
    with pytest.raises(OSError) as raised:
        blocks.put("bbbb", b"2")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == "bbbb"
    blocks.put("cccc", b"3")
    assert {obj.name for obj in local.list()} == {"aaaa", "cccc"}
    assert blocks.get("aaaa") == b"1"
    for _ in range(2):
        with pytest.raises(OSError, match="Input/output error"):
            blocks.get("aaaa")
    pending = blocks.begin("dddd")
    pending.write(b"4", b"5")
    with pytest.raises(OSError):
        pending.commit()
    assert local.get("dddd") == b"45"  # the commit was made before the error
    assert blocks.calls == {"put": 3, "get": 3, "begin": 1, "write": 1, "commit": 1}
    assert [(i.method, i.call) for i in blocks.injected] == [
        ("put", 2),
        ("get", 2),
        ("get", 3),
        ("commit", 1),
    ]
    blocks.disarm()
    assert blocks.get("aaaa") == b"1"
    blocks.arm(Fault("delete"))  # counts start again from the arm
    with pytest.raises(OSError):
        blocks.delete("aaaa")
    assert blocks.calls == {"delete": 1}
    with pytest.raises(ValueError, match="method"):
        Fault("rename")
