"""Whatever goes in comes out bit-exact, from every kind of source."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER
from ckptstore.store.codecs.ids import Codec
from tests.conftest import random_bytes, restore_bytes

MIN, AVG, MAX = DEFAULT_CHUNKER.min_size, DEFAULT_CHUNKER.avg_size, DEFAULT_CHUNKER.max_size
SIZES = [0, 1, MIN - 1, MIN, MIN + 1, AVG, MAX - 1, MAX, MAX + 1, 3 * MAX + 17, 5_000_000]


class ReadOnly:
    """A file-like object with read() but no readinto()."""

    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._io.read(n)


def as_source(kind: str, data: bytes, tmp_path: Path):
    if kind == "bytes":
        return data
    if kind == "path":
        path = tmp_path / "input.bin"
        path.write_bytes(data)
        return path
    if kind == "file":
        return io.BytesIO(data)
    if kind == "read_only":
        return ReadOnly(data)
    # an iterator of uneven pieces: a stream of unknown length
    pieces, pos, step = [], 0, 1
    while pos < len(data):
        pieces.append(data[pos : pos + step])
        pos += step
        step = step * 7 % 300_001 + 1
    return iter(pieces)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["bytes", "path", "file", "read_only", "iterator"])
def test_put_restores_bit_exact(store, tmp_path, size, kind):
    data = random_bytes(size, seed=size)
    ck = store.put("job_rt", as_source(kind, data, tmp_path))
    assert ck.size_bytes == size
    assert restore_bytes(store, ck.checkpoint_id) == data


def test_compressible_data_is_stored_smaller(store):
    data = b"epoch loss accuracy " * 200_000
    ck = store.put("job_rt", data)
    assert ck.stored_bytes < len(data) / 20
    codecs = {rec.codec for _, rec in store.context.catalog.manifest(ck.checkpoint_id)}
    assert codecs == {Codec.ZSTD}
    assert restore_bytes(store, ck.checkpoint_id) == data


def test_incompressible_blocks_are_stored_raw(store):
    ck = store.put("job_rt", random_bytes(2_000_000))
    codecs = {rec.codec for _, rec in store.context.catalog.manifest(ck.checkpoint_id)}
    assert codecs == {Codec.RAW}


def test_restore_to_path_and_file(store, tmp_path):
    data = random_bytes(3_000_000, seed=4)
    ck = store.put("job_rt", data)
    out = tmp_path / "restored.bin"
    assert store.restore(ck.checkpoint_id, out) == len(data)
    assert out.read_bytes() == data
    buf = io.BytesIO()
    store.restore(ck.checkpoint_id, buf)
    assert buf.getvalue() == data


DATA = random_bytes(4 * MAX + 12345, seed=99)


@pytest.fixture(scope="module")
def module_store(tmp_path_factory):
    from ckptstore import CheckpointStore
    from tests.conftest import TEST_CONFIG

    store = CheckpointStore.open(tmp_path_factory.mktemp("ra"), config=TEST_CONFIG)
    ck = store.put("job_ra", DATA)
    yield store, ck.checkpoint_id
    store.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(st.integers(0, len(DATA) + 10), st.integers(0, 3 * MAX)), min_size=1, max_size=6
    )
)
def test_random_access_reads_match_slices(module_store, ops):
    store, checkpoint_id = module_store
    with store.open_reader(checkpoint_id) as reader:
        for offset, length in ops:
            reader.seek(offset)
            assert reader.read(length) == DATA[offset : offset + length]
            if offset < len(DATA):
                assert reader.tell() == min(offset + length, len(DATA))


def test_reader_seek_relative_and_from_end(module_store):
    store, checkpoint_id = module_store
    with store.open_reader(checkpoint_id) as reader:
        assert reader.seek(-10, io.SEEK_END) == len(DATA) - 10
        assert reader.read() == DATA[-10:]
        reader.seek(100)
        reader.seek(50, io.SEEK_CUR)
        assert reader.read(5) == DATA[150:155]
        buf = bytearray(1000)
        reader.seek(MAX - 500)
        assert reader.readinto(buf) == 1000
        assert bytes(buf) == DATA[MAX - 500 : MAX + 500]


def test_reader_works_with_buffered_io(module_store):
    store, checkpoint_id = module_store
    with io.BufferedReader(store.open_reader(checkpoint_id), buffer_size=65536) as reader:
        assert reader.read(70_000) == DATA[:70_000]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200_000))
def test_arbitrary_small_data_round_trips(store, data):
    ck = store.put("job_hyp", data)
    assert restore_bytes(store, ck.checkpoint_id) == data


def test_chunker_parameters_are_fixed_at_creation(open_store, tmp_path):
    from dataclasses import replace

    from ckptstore.store.chunking.cutter import ChunkerParams
    from tests.conftest import TEST_CONFIG

    small = ChunkerParams(min_size=16 * 1024, avg_size=64 * 1024, max_size=256 * 1024)
    store = open_store(tmp_path / "s", config=replace(TEST_CONFIG, chunker=small))
    data = random_bytes(2_000_000, seed=8)
    ck = store.put("job", data)
    store.close()
    reopened = open_store(tmp_path / "s")  # default config: the store keeps its own parameters
    assert reopened.context.chunker == small
    again = reopened.put("job", data)
    assert again.stored_bytes == 0
    assert restore_bytes(reopened, ck.checkpoint_id) == data


def _tensor_files() -> list[bytes]:
    """Two saves of a model with many tiny tensors between big ones: the older one's
    tensors become deltas on the newer one's, the tiny ones mostly stay whole."""
    import numpy as np

    from ckptstore.testing.formats import safetensors_bytes

    rng = np.random.default_rng(3)
    first = {}
    for i in range(30):
        first[f"layer{i}.norm"] = rng.standard_normal(64 + i).astype(np.float32)
        first[f"layer{i}.weight"] = rng.standard_normal(20_000 + 97 * i).astype(np.float32)
    second = {name: (t * np.float32(1.001)).astype(np.float32) for name, t in first.items()}
    return [safetensors_bytes(first), safetensors_bytes(second)]


TENSOR_FILES = _tensor_files()


@pytest.fixture(scope="module")
def tensor_store(tmp_path_factory):
    from ckptstore import CheckpointStore
    from tests.conftest import TEST_CONFIG

    store = CheckpointStore.open(tmp_path_factory.mktemp("rt"), config=TEST_CONFIG)
    ids = [store.put("job_rt", data).checkpoint_id for data in TENSOR_FILES]
    store.settle()
    manifest = [record for _, record in store.context.catalog.manifest(ids[0])]
    assert any(record.base_id for record in manifest)  # the older one reads through deltas
    assert sum(record.raw_len < 4096 for record in manifest) >= 30  # and many tiny blocks
    yield store, ids
    store.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 1),
    ops=st.lists(
        st.tuples(st.integers(0, len(TENSOR_FILES[0])), st.integers(0, 300_000)),
        min_size=1,
        max_size=8,
    ),
)
def test_random_access_through_tiny_blocks_and_deltas_matches_slices(tensor_store, which, ops):
    """Reads jump back and forth across small blocks fetched several to a task and
    delta blocks fetched one to a task."""
    store, ids = tensor_store
    data = TENSOR_FILES[which]
    with store.open_reader(ids[which]) as reader:
        for offset, length in ops:
            reader.seek(offset)
            assert reader.read(length) == data[offset : offset + length]
