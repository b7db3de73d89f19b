"""verify finds damage and names it; reads never return wrong bytes."""

from __future__ import annotations

import pytest

from ckptstore.errors import CorruptBlockError, MissingBlockError
from ckptstore.store.packs.format import ENTRY
from tests.conftest import PER_TENSOR_CONFIG, random_bytes, restore_bytes

MB = 1_000_000


def pack_path(store, pack_id):
    return store.context.blocks.root / pack_id[:2] / f"{pack_id}.pack"


@pytest.fixture
def damaged(store):
    shared = random_bytes(MB, seed=1)
    a = store.put("job", shared + random_bytes(MB, seed=2))
    b = store.put("job", random_bytes(MB, seed=3) + shared)
    c = store.put("job", random_bytes(MB, seed=4))
    store.settle()  # the background rebases are done before the damage is made
    in_b = {rec.block_id for _, rec in store.context.catalog.manifest(b.checkpoint_id)}
    victim = next(
        rec for _, rec in store.context.catalog.manifest(a.checkpoint_id) if rec.block_id in in_b
    )
    path = pack_path(store, victim.pack_id)
    raw = bytearray(path.read_bytes())
    raw[victim.offset + ENTRY.size + victim.stored_len // 2] ^= 0x40
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    return store, victim, (a, b, c)


def test_verify_read_data_names_block_pack_and_checkpoints(damaged):
    store, victim, (a, b, c) = damaged
    report = store.verify(read_data=True)
    assert not report.ok
    (finding,) = report.findings
    assert finding.kind == "corrupt_block"
    assert finding.block_id == victim.block_id.hex()
    assert finding.pack_id == victim.pack_id
    assert set(finding.checkpoints) == {a.checkpoint_id, b.checkpoint_id}
    assert report.affected_checkpoints == sorted([a.checkpoint_id, b.checkpoint_id])


def test_reading_corrupt_block_raises_never_returns_data(damaged):
    store, victim, (a, _, c) = damaged
    with pytest.raises(CorruptBlockError) as info:
        restore_bytes(store, a.checkpoint_id)
    assert info.value.block_id == victim.block_id.hex()
    assert info.value.pack_id == victim.pack_id
    assert restore_bytes(store, c.checkpoint_id) == random_bytes(MB, seed=4)


def test_verify_without_read_data_trusts_contents(damaged):
    store, _, _ = damaged
    assert store.verify().ok


def test_missing_pack_is_reported_with_checkpoints(store):
    ck = store.put("job", random_bytes(MB, seed=7))
    _, record = store.context.catalog.manifest(ck.checkpoint_id)[0]
    pack_path(store, record.pack_id).unlink()
    report = store.verify()
    assert {f.kind for f in report.findings} == {"missing_pack"}
    assert report.affected_checkpoints == [ck.checkpoint_id]
    with pytest.raises(MissingBlockError):
        restore_bytes(store, ck.checkpoint_id)


def test_truncated_pack_is_reported(store):
    ck = store.put("job", random_bytes(MB, seed=8))
    _, record = store.context.catalog.manifest(ck.checkpoint_id)[-1]
    path = pack_path(store, record.pack_id)
    path.write_bytes(path.read_bytes()[:-10])
    report = store.verify(read_data=True)
    assert any(f.kind == "truncated_pack" for f in report.findings)
    assert report.affected_checkpoints == [ck.checkpoint_id]


def test_missing_block_row_is_reported(store):
    import sqlite3

    ck = store.put("job", random_bytes(MB, seed=9))
    _, record = store.context.catalog.manifest(ck.checkpoint_id)[0]
    with sqlite3.connect(store.context.catalog.path) as conn:
        conn.execute("DELETE FROM blocks WHERE block_id = ?", (record.block_id,))
    report = store.verify()
    assert [(f.kind, f.block_id, f.checkpoints) for f in report.findings] == [
        ("missing_block", record.block_id.hex(), (ck.checkpoint_id,))
    ]


def test_healthy_store_verifies_every_block(store):
    store.put("job", random_bytes(2 * MB, seed=11))
    report = store.verify(read_data=True)
    assert report.ok and report.bytes_checked == 2 * MB
    assert report.blocks_checked == store.stats().blocks


def test_a_damaged_tiny_block_fails_only_its_own_reads(open_store):
    """Small blocks are fetched several to a task: a damaged one must not fail reads of
    the others, and reading it must name it."""
    store = open_store(config=PER_TENSOR_CONFIG)  # a block per tensor: tiny blocks
    import numpy as np

    from ckptstore.store import restore
    from ckptstore.testing.formats import safetensors_bytes

    rng = np.random.default_rng(5)
    tensors = {f"norm{i}.weight": rng.standard_normal(256).astype(np.float32) for i in range(40)}
    data = safetensors_bytes(tensors)
    record = store.put("job", data)
    manifest = store.context.catalog.manifest(record.checkpoint_id)
    small = [(offset, rec) for offset, rec in manifest if rec.raw_len < restore.TASK_BYTES]
    assert len(small) > 20  # most blocks of the file are tiny: fetched in shared tasks
    offset, victim = small[len(small) // 2]
    path = pack_path(store, victim.pack_id)
    raw = bytearray(path.read_bytes())
    raw[victim.offset + ENTRY.size + victim.stored_len - 1] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with store.open_reader(record.checkpoint_id) as reader:
        reader.seek(offset - 8)
        assert reader.read(8) == data[offset - 8 : offset]  # the block before it
        with pytest.raises(CorruptBlockError) as info:
            reader.read(1)
        assert info.value.block_id == victim.block_id.hex()
        after = offset + victim.raw_len
        reader.seek(after)
        assert reader.read(100) == data[after : after + 100]


def test_a_manifest_that_disagrees_with_its_blocks_is_refused_not_looped_on(store):
    """Offsets that leave a block more or fewer bytes than it has would stall a reader:
    opening one is an integrity error."""
    import sqlite3

    from ckptstore.errors import IntegrityError

    data = random_bytes(MB, seed=8)
    record = store.put("job", data)
    with sqlite3.connect(store.context.catalog.path) as conn:
        conn.execute(
            "UPDATE checkpoints SET size_bytes = size_bytes + 10 WHERE checkpoint_id = ?",
            (record.checkpoint_id,),
        )
    with pytest.raises(IntegrityError, match="the manifest gives block"):
        store.open_reader(record.checkpoint_id)
    report = store.verify()
    (finding,) = report.findings
    assert (finding.kind, finding.checkpoints) == ("bad_manifest", (record.checkpoint_id,))


def test_verify_follows_blocks_moved_while_it_runs(store):
    """A pack merge (or rebase, or compaction) in another thread or process moves blocks
    and deletes their old packs while verify goes through the store: no finding."""
    for seed in range(6):
        store.put(f"job{seed}", random_bytes(50_000, seed=seed))
    store.settle()
    before = list(store.context.catalog.iter_blocks())
    assert store.gc(grace_s=0).packs_merged > 0
    assert {r.pack_id for r in store.context.catalog.iter_blocks()} != {r.pack_id for r in before}
    # verify reads the block rows as they were before the merge, the packs as after
    store.context.catalog.iter_blocks = lambda: iter(before)
    report = store.verify(read_data=True)
    assert report.ok, report.findings
