"""Reverse deltas within a job: the newest checkpoint whole, older ones deltas on it;
smaller, bounded, lossless."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.errors import CorruptBlockError
from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.codecs.ids import Codec, DecodeError
from ckptstore.store.packs.format import ENTRY, HEADER
from ckptstore.store.packs.usage import reclaimable
from ckptstore.store.rebase import chain_depths
from ckptstore.testing.formats import safetensors_bytes
from tests.conftest import TEST_CONFIG, restore_bytes

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, "tiny", "-tiny", "max", "min"]


def special_floats(dtype, n: int, seed: int = 0) -> np.ndarray:
    """Weights-like values with NaN, infinities, signed zeros and denormals mixed in."""
    values = (np.random.default_rng(seed).standard_normal(n) * 0.02).astype(dtype)
    info = np.finfo(dtype)
    named = {"tiny": info.smallest_subnormal, "max": info.max, "min": info.min}
    for i, special in enumerate(SPECIALS):
        if isinstance(special, str):
            special = -named[special[1:]] if special.startswith("-") else named[special]
        values[i * (n // len(SPECIALS))] = special
    return values


# 64 KiB tensor blocks: several blocks per tensor while the files stay small
CONFIG = dataclasses.replace(
    TEST_CONFIG,
    chunker=ChunkerParams(16 * 1024, 64 * 1024, 256 * 1024, tensor_block_bytes=64 * 1024),
)


def model(seed: int, step: int) -> dict[str, np.ndarray]:
    """A model after ``step`` small updates: every value changes a little each step."""
    rng = np.random.default_rng(seed)
    tensors = {
        "f32": special_floats(np.float32, 100_003, seed),
        "f64": special_floats(np.float64, 20_001, seed),
        "f16": special_floats(np.float16, 50_001, seed),
        "bf16": (special_floats(np.float32, 60_001, seed).view(np.uint32) >> 16).astype(np.uint16),
        "i64": rng.integers(-(2**40), 2**40, 10_001, dtype=np.int64),
        "i8": rng.integers(-128, 128, 70_001, dtype=np.int8),
    }
    step_rng = np.random.default_rng(seed + 1000 * step)
    for name in ("f32", "f64", "f16"):
        values = tensors[name]
        finite = np.isfinite(values) & (np.abs(values) < 1)
        noise = step_rng.standard_normal(len(values)).astype(values.dtype) * values.dtype.type(1e-4)
        values[finite] += noise[finite] * step
    tensors["bf16"][::7] += np.uint16(step)
    tensors["i64"][::5] += step
    return tensors


def with_scratch(tensors: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The tensors with a scratch buffer after each: its blocks share their packs."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, values in tensors.items():
        out[name] = values
        out[f"scratch.{name}"] = rng.integers(0, 256, 200_000, dtype=np.uint8)
    return out


def put_steps(
    store, steps: int, job: str = "run", seed: int = 1, start: int = 0
) -> list[tuple[str, bytes]]:
    out = []
    for step in range(start, start + steps):
        data = safetensors_bytes(model(seed, step), {"step": str(step)})
        out.append((store.put(job, data, step=step).checkpoint_id, data))
    store.settle()
    return out


def codecs_of(store, checkpoint_id: str) -> list[int]:
    return [r.codec for _, r in store.context.catalog.manifest(checkpoint_id)]


def depths_of(store, checkpoint_id: str) -> list[int]:
    records = [r for _, r in store.context.catalog.manifest(checkpoint_id)]
    depths = chain_depths(store.context.catalog, records, limit=100)
    return [depths[r.block_id] for r in records]


@pytest.fixture
def store(open_store):
    return open_store(config=CONFIG)


def blocks_of(store, checkpoint_id: str) -> set[bytes]:
    return {r.block_id for _, r in store.context.catalog.manifest(checkpoint_id)}


def bases_of(store, checkpoint_id: str) -> set[bytes]:
    return {r.base_id for _, r in store.context.catalog.manifest(checkpoint_id) if r.base_id}


def tensor_bases_of(store, checkpoint_id: str) -> set[bytes]:
    manifest = store.context.catalog.manifest(checkpoint_id)
    return {r.base_id for _, r in manifest if r.base_id and r.codec == Codec.BIASED_DELTA}


def dead_fractions(store) -> list[float]:
    return [
        (u.size - HEADER.size - u.live_bytes) / u.size for u in store.context.catalog.pack_usage()
    ]


def test_newest_checkpoint_stays_whole_and_its_parent_becomes_deltas_on_it(store):
    (first, data1), (second, data2) = put_steps(store, 2)
    assert codecs_of(store, first).count(Codec.BIASED_DELTA) >= 10
    assert Codec.BIASED_DELTA not in codecs_of(store, second)
    assert bases_of(store, first) <= blocks_of(store, second)
    assert restore_bytes(store, first) == data1
    assert restore_bytes(store, second) == data2
    stored = store.stats().stored_bytes
    assert stored < 0.9 * 2 * store.get(second).stored_bytes  # less than two whole copies
    # the first checkpoint's storedBytes shrank by what its rebase saved
    per_checkpoint = store.get(first).stored_bytes + store.get(second).stored_bytes
    assert abs(per_checkpoint - stored) < 0.02 * stored
    # the whole copies the rebase replaced were compacted away at once
    assert max(dead_fractions(store)) <= CONFIG.compact_dead_fraction


def test_blocks_whose_whole_copies_would_stay_on_disk_are_not_rebased(open_store):
    """A frozen base saved with a small changing adapter: the first checkpoint's pack
    holds both, and rebasing the adapter would leave its whole copy in a pack GC does
    not compact, so only later checkpoints' adapters (packs of their own) become deltas."""
    # With puts that store tensor blocks raw no whole copy stays behind (every raw
    # block of the pack is re-encoded, so the pack goes): puts that encode whole here.
    config = dataclasses.replace(
        CONFIG, pack_target_bytes=32 * 1024 * 1024, defer_whole_encode=False
    )
    store = open_store(config=config)
    frozen = special_floats(np.float32, 1_000_000, seed=7)  # 4 MB, stored once

    def save(step: int) -> str:
        adapter = model(3, step)["f32"][:20_000]  # 80 KB: under 5% of the first pack
        data = safetensors_bytes({"base": frozen, "adapter": adapter})
        return store.put("lora", data, step=step).checkpoint_id

    first, second, third = save(0), save(1), save(2)
    store.settle()
    assert Codec.BIASED_DELTA not in codecs_of(store, first)  # its adapter stays whole
    assert Codec.BIASED_DELTA in codecs_of(store, second)  # its own pack: rebased, dropped
    assert Codec.BIASED_DELTA not in codecs_of(store, third)  # the newest
    usage = store.context.catalog.pack_usage()
    assert all(not reclaimable(u, config.compact_dead_fraction) for u in usage)
    dead = sum(u.size - HEADER.size - u.live_bytes for u in usage)
    assert dead == 0  # no whole copy left behind next to a delta


def test_deltas_only_within_a_job(store):
    put_steps(store, 2, job="a", seed=2)
    (older, data), (newer, _) = put_steps(store, 2, job="b")
    assert restore_bytes(store, older) == data
    job_a_blocks = set().union(
        *(blocks_of(store, c.checkpoint_id) for c in store.list("a").checkpoints)
    )
    assert bases_of(store, older) and bases_of(store, older) <= blocks_of(store, newer)
    # (a safetensors header both jobs saved is one block: an opaque delta may name it)
    assert not tensor_bases_of(store, older) & job_a_blocks


def test_chains_never_exceed_the_configured_depth(open_store):
    store = open_store(config=dataclasses.replace(CONFIG, delta_max_depth=2))
    saved = put_steps(store, 7)
    deepest = [max(depths_of(store, ck)) for ck, _ in saved]
    # a checkpoint stays whole once two older ones hang below it
    assert deepest == [2, 1, 0, 2, 1, 0, 0]
    for checkpoint_id, data in saved:
        assert restore_bytes(store, checkpoint_id) == data


def test_depth_zero_turns_deltas_off(open_store):
    store = open_store(config=dataclasses.replace(CONFIG, delta_max_depth=0))
    saved = put_steps(store, 3)
    assert all(Codec.BIASED_DELTA not in codecs_of(store, ck) for ck, _ in saved)


def test_deleting_the_newest_keeps_its_blocks_only_within_the_grace_period(store, clock):
    (first, data1), (second, _) = put_steps(store, 2)
    bases = bases_of(store, first)
    store.delete(second)
    assert store.gc().blocks_materialized == 0  # a just-deleted base may still be read
    assert {r.block_id for r in store.context.catalog.iter_blocks()} >= bases
    assert restore_bytes(store, first) == data1


def test_rolling_back_frees_the_deleted_checkpoints(store, clock, open_store, tmp_path):
    """Deleting the newest checkpoints (a run rolled back) frees them: the deltas of the
    one left are stored whole again, and the store ends up as if it had held only that
    one; the next save rebases it as usual."""
    saved = put_steps(store, 4)
    (first, data1), *rolled_back = saved
    for checkpoint_id, _ in rolled_back:
        store.delete(checkpoint_id)
    clock.advance(CONFIG.gc_grace_s + 1)
    report = store.gc()
    assert report.blocks_materialized >= 10 and report.blocks_removed > 0
    assert restore_bytes(store, first) == data1
    assert Codec.BIASED_DELTA not in codecs_of(store, first)
    assert {r.block_id for r in store.context.catalog.iter_blocks()} == blocks_of(store, first)
    alone = open_store(tmp_path / "alone", CONFIG)
    alone.put("run", data1)
    assert store.stats().stored_bytes <= 1.05 * alone.stats().stored_bytes
    assert store.verify(read_data=True).ok
    store.put("run", safetensors_bytes(model(1, 9)))
    store.settle()
    assert Codec.BIASED_DELTA in codecs_of(store, first)
    assert restore_bytes(store, first) == data1


def test_deleting_the_older_frees_its_deltas(store, clock):
    (first, _), (second, data2) = put_steps(store, 2)
    store.delete(first)
    clock.advance(CONFIG.gc_grace_s + 1)
    store.gc()
    assert {r.block_id for r in store.context.catalog.iter_blocks()} == blocks_of(store, second)
    assert restore_bytes(store, second) == data2


def test_verify_decodes_chains_and_names_checkpoints_hurt_by_a_bad_base(store):
    (first, _), (second, _), (third, _) = put_steps(store, 3)
    assert store.verify(read_data=True).ok
    base_ids = bases_of(store, second)
    victim = next(r for _, r in store.context.catalog.manifest(third) if r.block_id in base_ids)
    path = store.context.blocks.root / victim.pack_id[:2] / f"{victim.pack_id}.pack"
    raw = bytearray(path.read_bytes())
    raw[victim.offset + ENTRY.size + victim.stored_len // 2] ^= 0x10
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    report = store.verify(read_data=True)
    kinds = {f.kind for f in report.findings}
    assert kinds == {"corrupt_block", "corrupt_base"}
    assert set(report.affected_checkpoints) == {first, second, third}
    for checkpoint_id in (first, second):  # reads name the damaged base, not the delta
        with pytest.raises(CorruptBlockError) as info:
            restore_bytes(store, checkpoint_id)
        assert info.value.block_id == victim.block_id.hex()


def test_verify_decodes_each_block_of_a_chain_once(store, monkeypatch):
    """verify with data walks each chain from its whole block, decoding every delta on
    its base's bytes just decoded: as many decodes as blocks, however deep the chains."""
    put_steps(store, 5)
    assert max(depths_of(store, store.list("run").checkpoints[-1].checkpoint_id)) >= 3
    codec = store.context.codec
    decodes = []
    original = codec.decode

    def counting(*args, **kwargs):
        decodes.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(codec, "decode", counting)
    report = store.verify(read_data=True)
    assert report.ok and report.blocks_checked == store.stats().blocks
    assert len(decodes) == store.stats().blocks


def test_reads_after_compaction_follow_moved_bases(store, clock):
    data = safetensors_bytes(model(1, 0))
    first = store.put("run", data)
    second = store.put("run", safetensors_bytes(with_scratch(model(1, 1), seed=5)))
    # the same tensors again, in another job: they keep the bases alive, not the scratch
    store.put("copy", safetensors_bytes(model(1, 1)))
    store.settle()
    tensor_deltas = codecs_of(store, first.checkpoint_id).count(Codec.BIASED_DELTA)
    assert tensor_deltas
    store.delete(second.checkpoint_id)
    clock.advance(CONFIG.gc_grace_s + 1)
    report = store.gc()
    assert report.packs_compacted > 0  # scratch blocks dropped, bases moved
    # the tensors' bases are still in use (only the header's, of the deleted one, is not)
    assert codecs_of(store, first.checkpoint_id).count(Codec.BIASED_DELTA) == tensor_deltas
    assert restore_bytes(store, first.checkpoint_id) == data
    assert store.verify(read_data=True).ok


def test_a_failed_rebase_leaves_the_commit_and_the_parent_whole(store, monkeypatch, caplog):
    import ckptstore.store.commit as commit

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(commit, "rebase_parent", broken)
    (first, data1), (second, data2) = put_steps(store, 2)
    assert "rebasing checkpoint" in caplog.text and "failed" in caplog.text
    assert Codec.BIASED_DELTA not in codecs_of(store, first) + codecs_of(store, second)
    assert restore_bytes(store, first) == data1 and restore_bytes(store, second) == data2


def test_a_rebase_left_by_a_dead_process_is_taken_up_once_its_claim_lapses(
    open_store, clock, monkeypatch
):
    from ckptstore.store.commit import Committer

    first_process = open_store()
    with monkeypatch.context() as patch:  # it claims the rebase, then dies before running it
        patch.setattr(Committer, "_rebase", lambda self, *ids: None)
        (first, data1), (second, data2) = put_steps(first_process, 2)
    other_process = open_store()  # a second process on the same store
    assert first_process.stats().pending_rebases == 1
    other_process.gc()
    other_process.settle()
    assert Codec.BIASED_DELTA not in codecs_of(other_process, first)  # still claimed
    clock.advance(TEST_CONFIG.lease_ttl_s + 1)
    other_process.gc()  # the claim has lapsed: this process takes the work
    other_process.settle()
    assert Codec.BIASED_DELTA in codecs_of(other_process, first)
    assert other_process.stats().pending_rebases == 0
    assert restore_bytes(other_process, first) == data1
    assert restore_bytes(other_process, second) == data2


def test_a_store_written_with_the_older_plane_codecs_keeps_working(open_store, monkeypatch):
    """Blocks stored as codec 2 (before codecs 4 and 5) read back, rebase onto new
    blocks as codec 5, verify and survive GC."""
    # puts that encode whole, as the stores that wrote codec 2 did
    store = open_store(config=dataclasses.replace(CONFIG, defer_whole_encode=False))
    import zstandard

    from ckptstore.store.codecs.planes import to_planes

    new_encode = BlockCodec.encode

    def old_encode(self, raw, width=None, *, aligned=False):
        kind, payload = new_encode(self, raw, width)  # codec 4, never 7
        if kind != Codec.FRAMED_PLANES:
            return kind, payload
        width = payload[0]
        planes = to_planes(memoryview(raw), width)
        return Codec.ZSTD_PLANES, bytes([width]) + zstandard.ZstdCompressor().compress(planes)

    monkeypatch.setattr(BlockCodec, "encode", old_encode)
    (first, data1), (second, data2) = put_steps(store, 2)
    assert Codec.ZSTD_PLANES in codecs_of(store, second)  # older deltas hang on these
    assert bases_of(store, first) <= blocks_of(store, second)
    assert restore_bytes(store, first) == data1
    monkeypatch.setattr(BlockCodec, "encode", new_encode)
    ((third, data3),) = put_steps(store, 1, start=2)
    assert Codec.ZSTD_PLANES not in codecs_of(store, second)  # rebased from codec 2
    assert Codec.BIASED_DELTA in codecs_of(store, second)
    assert Codec.EXPONENT_PLANES in codecs_of(store, third)
    for checkpoint_id, data in ((first, data1), (second, data2), (third, data3)):
        assert restore_bytes(store, checkpoint_id) == data
    assert store.verify(read_data=True).ok
    store.delete(third)
    store.gc()
    assert restore_bytes(store, second) == data2 and restore_bytes(store, first) == data1


codec = BlockCodec()


@settings(max_examples=60, deadline=None)
@given(
    width=st.sampled_from([1, 2, 4, 8]),
    n=st.integers(1, 40_000),
    flips=st.integers(0, 64),
    seed=st.integers(0, 2**32 - 1),
)
def test_delta_codec_round_trips_any_bytes(width, n, flips, seed):
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal(n // 4 + 1).astype(np.float32).tobytes() * 2)[:n]
    raw = bytearray(base)
    for pos in rng.integers(0, n, flips):
        raw[pos] ^= int(rng.integers(1, 256))
    encoded = codec.encode_delta(memoryview(bytes(raw)), base, width)
    if encoded is None:
        return  # judged not to pay: the caller stores the block whole
    kind, payload = encoded
    assert kind == Codec.BIASED_DELTA
    assert codec.decode(kind, payload, n, base) == bytes(raw)


def test_delta_needs_its_base():
    base = special_floats(np.float32, 10_000).tobytes()
    raw = bytearray(base)
    raw[100] ^= 1
    kind, payload = codec.encode_delta(memoryview(bytes(raw)), base, 4)
    with pytest.raises(DecodeError):
        codec.decode(kind, payload, len(raw))
    with pytest.raises(DecodeError):
        codec.decode(kind, payload, len(raw), base[:-4])
    assert codec.decode(kind, payload, len(raw), bytes(len(base))) != bytes(raw)


def test_unrelated_data_is_not_delta_encoded():
    base = np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    raw = special_floats(np.float32, 25_000).tobytes()
    assert codec.encode_delta(memoryview(raw), base, 4) is None


def test_a_delta_that_does_not_decode_back_is_never_kept(store, monkeypatch, caplog):
    from ckptstore.store.codecs.block import BlockCodec

    real = BlockCodec.decode

    def corrupting(self, codec, payload, raw_len, base=None, out=None):
        # the same signature as the real one: readers pass a buffer to decode into
        decoded = bytearray(real(self, codec, payload, raw_len, base, out))
        if codec == Codec.BIASED_DELTA:
            decoded[0] ^= 1
        return decoded

    monkeypatch.setattr(BlockCodec, "decode", corrupting)
    (first, data1), _ = put_steps(store, 2)
    monkeypatch.setattr(BlockCodec, "decode", real)
    assert "does not decode back" in caplog.text
    assert Codec.BIASED_DELTA not in codecs_of(store, first)
    assert restore_bytes(store, first) == data1


def test_best_copies_do_not_stop_the_rebase_of_their_source(store):
    """Each save improves the metric, so each gets a best copy that the next one
    replaces: the originals are rebased all the same."""
    saved = []
    for step in range(3):
        data = safetensors_bytes(model(1, step))
        record = store.put("run", data, step=step, metrics={"validationLoss": 1.0 / (step + 1)})
        saved.append((record.checkpoint_id, data))
    store.settle()
    assert [c.type for c in store.list("run").checkpoints].count("best") == 1
    for checkpoint_id, _ in saved[:-1]:
        assert Codec.BIASED_DELTA in codecs_of(store, checkpoint_id)
    for checkpoint_id, data in saved:
        assert restore_bytes(store, checkpoint_id) == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=100), flip=st.integers(0, 99))
def test_same_bytes_finds_any_one_changed_byte(data, flip):
    """The rebase's decode-back check compares eight bytes at a time: a change in the
    last partial word counts as much as one in a full word."""
    from ckptstore.store.rebase import same_bytes

    assert same_bytes(data, memoryview(data))
    assert not same_bytes(data, data + b"\0")
    if data:
        changed = bytearray(data)
        changed[flip % len(data)] ^= 0x80
        assert not same_bytes(memoryview(data), bytes(changed))


def test_blocks_shorter_than_any_delta_are_not_tried(store, monkeypatch):
    """A scalar that changes every save (a step count) is stored in fewer bytes than any
    codec 6 payload holds: the rebase does not read it and its base to find out."""
    tried: list[int] = []
    real = BlockCodec.encode_delta

    def counted(self, raw, base, width, limit=None):
        tried.append(len(raw))
        return real(self, raw, base, width, limit)

    monkeypatch.setattr(BlockCodec, "encode_delta", counted)
    weights = np.random.default_rng(0).standard_normal(300_000).astype(np.float32)
    for step in range(2):
        tensors = {
            "a": weights + np.float32(step * 1e-3),
            "step": np.array([step], np.float32),
            "b": weights - np.float32(step * 1e-3),
        }
        store.put("run", safetensors_bytes(tensors), step=step)
    store.settle()
    assert tried and min(tried) > 4
