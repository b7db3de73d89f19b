"""Pulls by blocks (GET .../blocks, POST .../blocks/fetch): stored frames on the wire,
deltas on a cached checkpoint, every block checked, tenants kept apart."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ckptstore.client import Client
from ckptstore.errors import IntegrityError, InvalidPath
from ckptstore.store.blockfetch import BlockFetch
from ckptstore.store.fetchframes import FrameReader
from ckptstore.testing.formats import safetensors_bytes
from tests.conftest import TEST_CONFIG
from tests.server_helpers import JOB, Server, make_server


def weights(step: int, tensors: int = 3, size: int = 600_000) -> dict[str, np.ndarray]:
    """bf16 weights (compressible: a narrow range of exponents); each step changes a
    third of the values a little."""
    out = {}
    for i in range(tensors):
        values = np.random.default_rng(i).standard_normal(size).astype(np.float32) * 0.02
        if step:
            rng = np.random.default_rng(1000 * step + i)
            changed = rng.random(size) < 0.3
            values[changed] += rng.standard_normal(int(changed.sum())).astype(np.float32) * 1e-3
        out[f"layer{i}.weight"] = (values.view(np.uint32) >> 16).astype(np.uint16)
    return out


class _Counted(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, add: list[int]) -> None:
        self._inner = inner
        self._add = add

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._add.append(len(chunk))
            yield chunk

    def close(self) -> None:
        self._inner.close()


class Counting(httpx.BaseTransport):
    """The in-process server; counts the body bytes of block fetch answers, and can
    damage them (``damage``: the answer's bytes -> the bytes the client gets)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self.chunks: list[int] = []
        self.damage = None

    @property
    def received(self) -> int:
        return sum(self.chunks)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if not request.url.path.endswith("/blocks/fetch") or response.status_code != 200:
            return response
        if self.damage is not None:
            body = self.damage(response.read())
            return httpx.Response(200, headers=response.headers, content=body)
        assert isinstance(response.stream, httpx.SyncByteStream)
        stream = _Counted(response.stream, self.chunks)
        return httpx.Response(200, headers=response.headers, stream=stream)


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path / "server")
    with server.client:
        yield server


@pytest.fixture
def raw_srv(tmp_path: Path) -> Iterator[Server]:
    """A server whose puts store tensor blocks raw (StoreConfig.defer_whole_encode)."""
    config = dataclasses.replace(TEST_CONFIG, defer_whole_encode=True)
    server = make_server(tmp_path / "server", config=config)
    with server.client:
        yield server


def client_of(srv: Server, headers: dict[str, str]) -> tuple[Client, Counting]:
    counting = Counting(srv.client._transport)  # type: ignore[attr-defined]
    http = httpx.Client(transport=counting, base_url="http://testserver")
    key = headers["Authorization"].split()[1]
    return Client("http://testserver", key, http=http, sleep=lambda s: None), counting


def stored_len(srv: Server, checkpoint_id: str) -> int:
    """The stored bytes of the checkpoint's blocks (each once), as the store keeps them."""
    manifest = srv.store.context.catalog.manifest(checkpoint_id)
    blocks = {r.block_id: r.stored_len for _, r in manifest}
    return sum(blocks.values())


def test_pull_of_a_file_receives_its_stored_size_not_its_raw_size(srv, tmp_path):
    client, counting = client_of(srv, srv.acme)
    data = safetensors_bytes(weights(0))
    record = client.put(JOB, data)
    srv.store.encode_deferred()  # its tensor blocks, stored raw, encoded whole
    out = tmp_path / "model.safetensors"
    assert client.restore(record.checkpoint_id, out) == len(data)
    assert out.read_bytes() == data and not (tmp_path / "model.safetensors.part").exists()
    stored = stored_len(srv, record.checkpoint_id)
    assert stored < 0.8 * len(data)  # the weights compress
    assert counting.received <= 1.05 * stored
    assert client.bytes_received == counting.received


def test_pull_of_a_newest_checkpoint_stored_raw_receives_it_encoded(raw_srv, tmp_path):
    client, counting = client_of(raw_srv, raw_srv.acme)
    data = safetensors_bytes(weights(0))
    record = client.put(JOB, data)
    assert stored_len(raw_srv, record.checkpoint_id) >= 0.95 * len(data)  # raw until rebased
    out = tmp_path / "model.safetensors"
    assert client.restore(record.checkpoint_id, out) == len(data)
    assert out.read_bytes() == data
    assert counting.received < 0.8 * len(data)  # the weights compress on the way


def test_pull_of_a_folder_writes_each_file_where_it_starts(srv, tmp_path):
    client, counting = client_of(srv, srv.acme)
    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(safetensors_bytes(weights(0)))
    (folder / "sub" / "config.json").write_text('{"layers": 3}')
    (folder / "empty.txt").write_bytes(b"")
    record = client.put(JOB, folder)
    out = tmp_path / "out"
    client.restore(record.checkpoint_id, out)
    for name in ("model.safetensors", "sub/config.json", "empty.txt"):
        assert (out / name).read_bytes() == (folder / name).read_bytes()
    assert counting.received <= 1.05 * stored_len(srv, record.checkpoint_id) + 1000
    cached = client.download(record.checkpoint_id, cache_dir=tmp_path / "cache")
    assert (cached / "sub" / "config.json").read_text() == '{"layers": 3}'


def test_an_older_checkpoint_stored_as_deltas_pulls_whole_and_right(srv, tmp_path):
    client, counting = client_of(srv, srv.acme)
    old, new = safetensors_bytes(weights(0)), safetensors_bytes(weights(1))
    first = client.put(JOB, old)
    client.put(JOB, new)
    srv.store.settle()  # the first is now stored as deltas on the second
    assert stored_len(srv, first.checkpoint_id) < 0.5 * len(old)
    client.restore(first.checkpoint_id, tmp_path / "old.bin")
    assert (tmp_path / "old.bin").read_bytes() == old
    assert counting.received < 0.8 * len(old)


def test_a_pull_with_the_previous_checkpoint_cached_receives_about_the_delta(srv, tmp_path):
    client, counting = client_of(srv, srv.acme)
    old, new = safetensors_bytes(weights(0)), safetensors_bytes(weights(1))
    first = client.put(JOB, old)
    second = client.put(JOB, new)
    srv.store.settle()
    delta = stored_len(srv, first.checkpoint_id)  # the first, stored as a delta
    cache = tmp_path / "cache"
    assert client.download(first.checkpoint_id, cache_dir=cache).read_bytes() == old
    cold = counting.received
    path = client.download(second.checkpoint_id, cache_dir=cache)
    assert path.read_bytes() == new
    received = counting.received - cold
    assert received <= 1.15 * delta and received < 0.5 * cold


def test_a_folder_pull_with_a_cached_folder_fetches_only_the_changes(srv, tmp_path):
    client, counting = client_of(srv, srv.acme)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes(weights(0)))
    (folder / "trainer_state.json").write_text(json.dumps({"step": 1, "log": ["x"] * 500}))
    first = client.put(JOB, folder)
    (folder / "model.safetensors").write_bytes(safetensors_bytes(weights(1)))
    (folder / "trainer_state.json").write_text(json.dumps({"step": 2, "log": ["x"] * 501}))
    second = client.put(JOB, folder)
    srv.store.settle()
    cache = tmp_path / "cache"
    client.download(first.checkpoint_id, cache_dir=cache)
    cold = counting.received
    path = client.download(second.checkpoint_id, cache_dir=cache)
    for name in ("model.safetensors", "trainer_state.json"):
        assert (path / name).read_bytes() == (folder / name).read_bytes()
    assert counting.received - cold < 0.5 * cold


def test_another_tenants_checkpoint_as_held_is_not_found_like_an_absent_one(srv):
    acme, _ = client_of(srv, srv.acme)
    first = acme.put(JOB, safetensors_bytes(weights(0)))
    mine = acme.put(JOB, safetensors_bytes(weights(1)))
    other, _ = client_of(srv, srv.other)
    theirs = other.put(JOB, safetensors_bytes(weights(1)))
    answers = []
    for held in (first.checkpoint_id, "ckpt_00000000000000000000"):
        response = srv.client.get(
            f"/v2/training/checkpoints/{theirs.checkpoint_id}/blocks",
            params={"held": held},
            headers=srv.other,
        )
        answers.append((response.status_code, response.json()["error"]["code"]))
    assert answers[0] == answers[1] == (404, "not_found")
    # the owner may name it
    ok = srv.client.get(
        f"/v2/training/checkpoints/{mine.checkpoint_id}/blocks",
        params={"held": first.checkpoint_id},
        headers=srv.acme,
    )
    assert ok.status_code == 200 and ok.json()["held"] == first.checkpoint_id


def test_another_tenants_block_ids_are_refused_like_absent_ones(srv):
    acme, _ = client_of(srv, srv.acme)
    secret = acme.put(JOB, safetensors_bytes(weights(0)))
    other, _ = client_of(srv, srv.other)
    theirs = other.put(JOB, b"other's own bytes" * 1000)
    acme_block = acme._pull.listing(secret.checkpoint_id).block_id(0).hex()
    own_block = other._pull.listing(theirs.checkpoint_id).block_id(0).hex()
    absent = "ab" * 32
    path = f"/v2/training/checkpoints/{theirs.checkpoint_id}/blocks/fetch"
    answers = []
    for body in (
        {"blocks": [acme_block]},
        {"blocks": [absent]},
        {"blocks": [own_block], "bases": [acme_block]},
        {"blocks": [own_block], "bases": [absent]},
    ):
        response = srv.client.post(path, json=body, headers=srv.other)
        error = response.json()["error"]
        answers.append((response.status_code, error["code"], error["type"]))
    assert set(answers) == {(422, "unknown_blocks", "UnknownBlocks")}
    assert srv.client.post(path, json={"blocks": [own_block]}, headers=srv.other).status_code == 200


def test_a_chain_whose_base_is_another_tenants_goes_whole(srv):
    """acme and other stored the same weights (one copy); other's next save makes that
    copy a delta on other's newer block, which acme must not receive."""
    acme, _ = client_of(srv, srv.acme)
    other, _ = client_of(srv, srv.other)
    shared = safetensors_bytes(weights(0))
    mine = acme.put("job_a", shared)
    other.put("job_o", shared)
    newer = other.put("job_o", safetensors_bytes(weights(1)))
    srv.store.settle()
    catalog = srv.store.context.catalog
    manifest = [r for _, r in catalog.manifest(mine.checkpoint_id)]
    assert any(r.base_id is not None for r in manifest)  # stored on other's blocks
    hidden = {r.block_id for _, r in catalog.manifest(newer.checkpoint_id)} - {
        r.block_id for r in manifest
    }
    fetch = BlockFetch(srv.store.context, "acme", [(r.block_id, None) for r in manifest])
    reader = FrameReader(1 << 30)
    sent = [frame for chunk in fetch.frames() for frame in reader.feed(chunk)]
    assert {f.block_id for f in sent} == {r.block_id for r in manifest}
    assert all(f.base_id is None for f in sent) and not hidden & {f.block_id for f in sent}


def test_a_damaged_frame_is_detected_and_nothing_is_written(srv, tmp_path):
    client, counting = client_of(srv, srv.acme)
    data = safetensors_bytes(weights(0))
    record = client.put(JOB, data)

    def flip(body: bytes) -> bytes:
        damaged = bytearray(body)
        damaged[len(body) // 2] ^= 0xFF  # inside some block's payload
        return bytes(damaged)

    counting.damage = flip
    out = tmp_path / "out" / "model.safetensors"
    with pytest.raises(IntegrityError):
        client.restore(record.checkpoint_id, out)
    assert list(out.parent.iterdir()) == []  # neither the file nor its part
    with pytest.raises(IntegrityError):
        client.download(record.checkpoint_id, cache_dir=tmp_path / "cache")
    blobs = tmp_path / "cache" / "blobs"
    assert [p.name for p in blobs.iterdir() if not p.name.endswith(".lock")] == []


def test_restore_with_a_cache_pulls_deltas_and_checks_the_cached_bytes(srv, tmp_path):
    client, counting = client_of(srv, srv.acme)
    old, new = safetensors_bytes(weights(0)), safetensors_bytes(weights(1))
    first = client.put(JOB, old)
    second = client.put(JOB, new)
    srv.store.settle()
    cache = tmp_path / "cache"
    client.download(first.checkpoint_id, cache_dir=cache)
    cold = counting.received
    out = tmp_path / "new.safetensors"
    client.restore(second.checkpoint_id, out, cache_dir=cache)
    assert out.read_bytes() == new
    assert counting.received - cold <= 1.15 * stored_len(srv, first.checkpoint_id)
    # a cached blob changed behind the cache's back: its blocks are not taken as bases
    (blob,) = [p for p in (cache / "blobs").iterdir() if "." not in p.name]
    blob.write_bytes(bytes(len(old)))
    client.restore(second.checkpoint_id, tmp_path / "again.bin", cache_dir=cache)
    assert (tmp_path / "again.bin").read_bytes() == new


def test_a_block_the_server_cannot_read_mid_answer_ends_it_with_its_error(
    srv, tmp_path, monkeypatch
):
    from ckptstore.errors import MissingBlockError, PackNotFound

    client, _ = client_of(srv, srv.acme)
    data = safetensors_bytes(weights(0))
    record = client.put(JOB, data)
    manifest = srv.store.context.catalog.manifest(record.checkpoint_id)
    lost = manifest[len(manifest) // 2][1].pack_id  # a pack the answer reaches midway
    blocks = srv.store.context.blocks
    real_get = blocks.get

    def get(pack_id: str, *args: object) -> bytes:
        if pack_id == lost:
            raise PackNotFound(pack_id)
        return real_get(pack_id, *args)

    monkeypatch.setattr(blocks, "get", get)
    out = tmp_path / "out" / "model.safetensors"
    with pytest.raises(MissingBlockError):
        client.restore(record.checkpoint_id, out)
    assert list(out.parent.iterdir()) == []


def test_stored_chains_come_bases_first_and_decode_on_the_client(srv, tmp_path, monkeypatch):
    from ckptstore.store import blockfetch

    monkeypatch.setattr(blockfetch, "CHAIN_SLACK", float("inf"))  # chains whatever they cost
    client, counting = client_of(srv, srv.acme)
    old, new = safetensors_bytes(weights(0)), safetensors_bytes(weights(1))
    first = client.put(JOB, old)
    second = client.put(JOB, new)
    srv.store.settle()
    manifest = [r for _, r in srv.store.context.catalog.manifest(first.checkpoint_id)]
    fetch = BlockFetch(srv.store.context, "acme", [(r.block_id, None) for r in manifest])
    reader = FrameReader(1 << 30)
    sent = [frame for chunk in fetch.frames() for frame in reader.feed(chunk)]
    seen: set[bytes] = set()
    for frame in sent:  # every delta's base came before it
        assert frame.base_id is None or frame.base_id in seen
        seen.add(frame.block_id)
    assert any(f.base_id is not None for f in sent)
    client.restore(first.checkpoint_id, tmp_path / "old.bin")
    assert (tmp_path / "old.bin").read_bytes() == old
    chains = stored_len(srv, first.checkpoint_id) + stored_len(srv, second.checkpoint_id)
    assert counting.received <= 1.05 * chains


def test_a_fetch_of_many_adjacent_blocks_reads_them_a_bounded_piece_at_a_time(srv, monkeypatch):
    """Blocks that follow one another in a pack are read together, a piece of at most
    READ_AHEAD_BYTES when its first block is wanted: a request naming thousands of
    blocks would otherwise hold all of their bytes in memory before the first frame."""
    from ckptstore.store import blockfetch

    monkeypatch.setattr(blockfetch, "READ_AHEAD_BYTES", 1 << 20, raising=False)
    data = np.random.default_rng(7).bytes(12 << 20)
    record = srv.store.put(JOB, data)  # one writer: its blocks follow one another
    manifest = [r for _, r in srv.store.context.catalog.manifest(record.checkpoint_id)]
    blocks = srv.store.context.blocks
    real_get = blocks.get
    reads: list[int] = []

    def get(pack_id, offset, length):
        reads.append(length)
        return real_get(pack_id, offset, length)

    monkeypatch.setattr(blocks, "get", get)
    fetch = BlockFetch(srv.store.context, "", [(r.block_id, None) for r in manifest])
    frames = fetch.frames()
    first = next(frames)
    assert len(reads) < 4 and sum(reads) <= (1 << 20) + len(first)  # not every run at once
    reader = FrameReader(1 << 30)
    sent = [frame for chunk in (first, *frames) for frame in reader.feed(chunk)]
    assert [f.block_id for f in sent] == [r.block_id for r in manifest]
    assert len(set(r.pack_id for r in manifest)) > 8


@pytest.mark.parametrize("name", ["../escaped.bin", "absolute", "sub/../../escaped.bin"])
def test_a_single_file_name_from_the_server_cannot_lead_out_of_the_folder(
    srv, tmp_path, monkeypatch, name
):
    """A restore into a folder names the file as the server lists it: a name with a
    folder, ".." or a leading "/" is refused before anything is written."""
    import dataclasses

    if name == "absolute":
        name = str(tmp_path / "a" / "escaped.bin")
    client, _ = client_of(srv, srv.acme)
    record = client.put(JOB, b"x" * 1000)
    real_listing = client._pull.listing

    def listing(checkpoint_id, held=None):
        found = real_listing(checkpoint_id, held)
        files = [dataclasses.replace(found.files[0], path=name)]
        return dataclasses.replace(found, files=files)

    monkeypatch.setattr(client._pull, "listing", listing)
    folder = tmp_path / "a" / "out"
    folder.mkdir(parents=True)
    with pytest.raises(InvalidPath):
        client.restore(record.checkpoint_id, folder)
    assert not (tmp_path / "a" / "escaped.bin").exists() and list(folder.iterdir()) == []


def test_a_folder_restore_sets_permission_bits_only(srv, tmp_path, monkeypatch):
    """The mode a server lists for a file of a folder is applied as permission bits: a
    setuid or setgid bit in it is not set on the restored file."""
    import dataclasses
    import stat

    client, _ = client_of(srv, srv.acme)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.sh").write_bytes(b"echo hi\n")
    record = client.put(JOB, folder)
    real_listing = client._pull.listing

    def listing(checkpoint_id, held=None):
        found = real_listing(checkpoint_id, held)
        files = [dataclasses.replace(f, mode=0o6755) for f in found.files]
        return dataclasses.replace(found, files=files)

    monkeypatch.setattr(client._pull, "listing", listing)
    client.restore(record.checkpoint_id, tmp_path / "out")
    mode = stat.S_IMODE((tmp_path / "out" / "run.sh").stat().st_mode)
    assert mode == 0o755


def test_an_error_frame_longer_than_any_error_answer_is_refused_at_its_head():
    """A frame's length bounds what the reader buffers: a block's by its raw length, an
    error answer's by MAX_ERROR_BYTES, not by whatever length the server states."""
    from ckptstore.errors import FormatError
    from ckptstore.store.fetchframes import ERROR, HEAD

    reader = FrameReader(1 << 20)
    with pytest.raises(FormatError):
        list(reader.feed(HEAD.pack(ERROR, 0, 0, 0, 1 << 31, bytes(32))))


def test_deltas_on_a_damaged_held_block_sent_again_unasked_end_the_pull(tmp_path):
    """Once the cached checkpoint is found damaged the batch is asked for again naming no
    base; a server that still sends deltas on held blocks gets an IntegrityError, not
    the same request again and again."""
    from ckptstore.client.pull import BlockPull, HeldBytes, RemoteListing
    from ckptstore.client.transport import RetryPolicy
    from ckptstore.store.catalog.records import FileRecord
    from ckptstore.store.codecs.block import BlockCodec
    from ckptstore.store.fetchframes import frame_head
    from ckptstore.store.ids import block_id

    held_raw = np.random.default_rng(1).standard_normal(50_000).astype(np.float32).tobytes()
    wanted_raw = (np.frombuffer(held_raw, np.float32) + np.float32(1e-6)).tobytes()
    held_path = tmp_path / "held.bin"
    held_path.write_bytes(b"\0" * len(held_raw))  # changed on disk since it was cached

    def listing_of(raw: bytes) -> RemoteListing:
        size = len(raw)
        files = [FileRecord("f.bin", 0, size, 0o644)]
        lens, offsets = np.array([size], np.int64), np.array([0], np.int64)
        return RemoteListing(
            "c" * 32, "file", size, files, block_id(raw), lens, offsets, None, None
        )

    codec, payload = BlockCodec().encode_delta(memoryview(wanted_raw), held_raw, 4)
    frame = frame_head(
        block_id(wanted_raw), codec, len(wanted_raw), len(payload), block_id(held_raw)
    )

    class Answer:
        def iter_bytes(self, size):
            yield frame + bytes(payload)

        def close(self):
            pass

    class Transport:
        retry = RetryPolicy(sleep=lambda s: None)
        asked = 0

        def stream(self, method, path, headers, json):
            Transport.asked += 1
            if Transport.asked > 5:
                raise RuntimeError("the same batch asked for again and again")
            return Answer()

    pull = BlockPull(Transport())  # type: ignore[arg-type]
    held = HeldBytes(listing_of(held_raw), [held_path])
    wanted = {block_id(wanted_raw): block_id(held_raw)}
    with pytest.raises(IntegrityError):
        pull.fetch_batch(listing_of(wanted_raw), wanted, held, lambda bid, raw: None)
    assert Transport.asked == 2


def test_a_cached_pull_of_a_raw_newest_gets_no_delta_larger_than_its_encoding(raw_srv, tmp_path):
    """The held checkpoint's tensors are unrelated to the newest's, which is still
    stored raw: a delta on them pays against the raw bytes but not against the whole
    encoding, which is what goes."""
    client, counting = client_of(raw_srv, raw_srv.acme)
    old = safetensors_bytes({k: v[::-1].copy() ^ 0x5A5A for k, v in weights(0).items()})
    new = safetensors_bytes(weights(0))
    first = client.put(JOB, old)
    cache = tmp_path / "cache"
    assert client.download(first.checkpoint_id, cache_dir=cache).read_bytes() == old
    second = client.put(JOB, new)
    cold = counting.received
    assert client.download(second.checkpoint_id, cache_dir=cache).read_bytes() == new
    received = counting.received - cold
    raw_srv.store.settle()
    raw_srv.store.encode_deferred()
    assert received <= 1.05 * stored_len(raw_srv, second.checkpoint_id)
