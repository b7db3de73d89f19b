"""A push of a save whose previous checkpoint the client holds sends deltas on it
(blockframes version 3), which the server rebuilds from its own copy of the base."""

from __future__ import annotations

import os
import re
import struct

import numpy as np
import pytest

from ckptstore.blockframes import FRAMES_V3, SENDABLE, SentBlock, frames_v3
from ckptstore.client import Client
from ckptstore.errors import BlockHashMismatch, DeltaBaseUnavailable, UndecodableBlock
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.codecs.ids import Codec
from ckptstore.store.ids import block_id
from ckptstore.testing.formats import safetensors_bytes
from tests.server_helpers import JOB, frames, make_server

ELEMENTS = 1_200_000  # per tensor: a few tensor blocks each


def weights(step: int) -> dict[str, np.ndarray]:
    """A model after ``step`` small training updates: bf16 and float32 tensors."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(2 * ELEMENTS).astype(np.float32) * np.float32(0.02)
    drift = np.random.default_rng(6).standard_normal(2 * ELEMENTS).astype(np.float32)
    now = base + drift * np.float32(2e-5 * step)
    return {
        "layer0.weight": (now[:ELEMENTS].view(np.uint32) >> 16).astype(np.uint16),  # bf16
        "layer1.weight": now[ELEMENTS:],
    }


def save(path, step: int) -> bytes:
    data = safetensors_bytes(weights(step), {"step": str(step)})
    path.write_bytes(data)
    return data


@pytest.fixture
def srv(tmp_path):
    server = make_server(tmp_path)
    with server.client:
        yield server


def key_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].split()[1]


@pytest.fixture
def client(srv):
    with Client("http://testserver", key_of(srv.acme), http=srv.client, sleep=lambda s: 0) as c:
        yield c


def uploaded(client: Client) -> float:
    """The bytes the server received in upload bodies (its metrics)."""
    text = client._transport.request("GET", "/metrics").text
    return float(re.search(r"^ckptstore_uploaded_bytes_total (\S+)$", text, re.M)[1])


def restored(client: Client, checkpoint_id: str, tmp_path) -> bytes:
    out = tmp_path / "restored"
    client.restore(checkpoint_id, out)
    return out.read_bytes()


def test_second_push_of_a_changed_file_sends_deltas(client, srv, tmp_path):
    first, second = tmp_path / "step_1.safetensors", tmp_path / "step_2.safetensors"
    save(first, 1)
    data = save(second, 2)
    client.put(JOB, first)
    sent, received = client.bytes_sent, uploaded(client)
    assert sent < 0.9 * first.stat().st_size  # encoded, though there was no base yet
    record = client.put(JOB, second)
    # whole blocks, each encoded as the store would, were sent before
    assert client.bytes_sent - sent < 0.6 * sent and client.bytes_sent - sent < 0.45 * len(data)
    assert uploaded(client) - received < 0.6 * received  # counted on the server
    assert restored(client, record.checkpoint_id, tmp_path) == data
    srv.store.settle()
    assert srv.store.verify().ok


def test_push_without_deltas_sends_raw_blocks(srv, tmp_path):
    """The comparison the test above rests on: the same two pushes, deltas off."""
    first, second = tmp_path / "step_1.safetensors", tmp_path / "step_2.safetensors"
    save(first, 1)
    save(second, 2)
    key = key_of(srv.acme)
    with Client("http://testserver", key, http=srv.client, push_deltas=False) as plain:
        plain.put(JOB, first)
        sent = plain.bytes_sent
        plain.put(JOB, second)
        assert plain.bytes_sent - sent > 0.9 * sent


def test_a_folder_and_the_download_cache_serve_as_bases(client, srv, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    save(folder / "model.safetensors", 1)
    (folder / "config.json").write_text('{"layers": 2}')
    first = client.put(JOB, folder)
    cache = tmp_path / "cache"
    # another machine: nothing pushed from here, but the previous checkpoint downloaded
    with Client("http://testserver", key_of(srv.acme), http=srv.client, cache_dir=cache) as other:
        other.download(first.checkpoint_id, cache)
        save(folder / "model.safetensors", 2)
        record = other.put(JOB, folder)
        assert other.bytes_sent < 0.6 * client.bytes_sent
    out = tmp_path / "out"
    client.restore(record.checkpoint_id, out)
    assert (out / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


@pytest.mark.parametrize("same_mtime", [False, True], ids=["touched", "mtime-kept"])
def test_a_changed_local_base_is_not_used(client, srv, tmp_path, same_mtime):
    first, second = tmp_path / "step_1.safetensors", tmp_path / "step_2.safetensors"
    save(first, 1)
    data = save(second, 2)
    client.put(JOB, first)
    sent = client.bytes_sent
    pushed = first.stat()
    save(first, 3)  # the file pushed before, written over since (same size)
    if same_mtime:  # as a copy that keeps times would: only its bytes tell
        os.utime(first, ns=(pushed.st_atime_ns, pushed.st_mtime_ns))
    record = client.put(JOB, second)
    assert client.bytes_sent - sent > 0.9 * sent
    assert restored(client, record.checkpoint_id, tmp_path) == data


def test_deltas_can_be_turned_off(srv, tmp_path):
    first = tmp_path / "step_1.safetensors"
    save(first, 1)
    cache = tmp_path / "cache"
    with Client("http://testserver", key_of(srv.acme), http=srv.client, cache_dir=cache,
                push_deltas=False) as plain:  # fmt: skip
        plain.put(JOB, first)
    assert not cache.exists()  # nothing noted, nothing read


# -- the route ---------------------------------------------------------------------
BLOCK = np.random.default_rng(1).standard_normal(250_000).astype(np.float32).tobytes()
CHANGED = (np.frombuffer(BLOCK, np.float32) + np.float32(1e-6)).tobytes()


def pending(srv, headers) -> str:
    r = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=headers, json={"type": "manual"}
    )
    assert r.status_code == 201
    return r.json()["checkpointId"]


def committed(srv, headers, data: bytes) -> None:
    """A checkpoint of one block, ``data`` (sent raw)."""
    cid = pending(srv, headers)
    url = f"/v2/training/checkpoints/{cid}"
    r = srv.client.put(f"{url}/blocks", headers=headers, content=frames([(block_id(data), data)]))
    assert r.status_code == 204
    body = {"blockIds": [block_id(data).hex()]}
    assert srv.client.post(f"{url}/commit", headers=headers, json=body).status_code == 200


def delta_frame(data: bytes, base: bytes, claimed: bytes | None = None) -> bytes:
    codec, payload = BlockCodec().encode_delta(memoryview(data), base, 4)
    sent = SentBlock(claimed or block_id(data), payload, len(data), codec, block_id(base), 4, "w#0")
    return frames_v3([sent])


def put_v3(srv, headers, cid: str, body: bytes):
    headers = headers | {"Content-Type": FRAMES_V3}
    return srv.client.put(f"/v2/training/checkpoints/{cid}/blocks", headers=headers, content=body)


def test_a_delta_on_a_tenants_own_block_is_rebuilt_and_stored(srv):
    committed(srv, srv.acme, BLOCK)
    cid = pending(srv, srv.acme)
    body = delta_frame(CHANGED, BLOCK)
    assert len(body) < len(CHANGED) / 2
    assert put_v3(srv, srv.acme, cid, body).status_code == 204
    r = srv.client.post(
        f"/v2/training/checkpoints/{cid}/commit",
        headers=srv.acme,
        json={"blockIds": [block_id(CHANGED).hex()]},
    )
    assert r.status_code == 200
    assert srv.client.get(r.json()["downloadUrl"]).content == CHANGED


def test_a_delta_on_another_tenants_block_is_refused_like_an_absent_one(srv):
    committed(srv, srv.acme, BLOCK)
    cid = pending(srv, srv.other)
    hidden = put_v3(srv, srv.other, cid, delta_frame(CHANGED, BLOCK))
    absent_base = (np.frombuffer(BLOCK, np.float32) * np.float32(2)).tobytes()
    absent = put_v3(srv, srv.other, cid, delta_frame(CHANGED, absent_base))
    assert hidden.status_code == absent.status_code == 422
    codes = {r.json()["error"]["code"] for r in (hidden, absent)}
    assert codes == {"delta_base_unavailable"}
    assert srv.store.context.catalog.get_block(block_id(CHANGED)) is None
    words = [
        r.json()["error"]["message"].replace(block_id(absent_base).hex(), "B")
        for r in (hidden, absent)
    ]
    assert words[0].replace(block_id(BLOCK).hex(), "B") == words[1]


def test_a_delta_that_rebuilds_to_another_id_stores_nothing(srv):
    committed(srv, srv.acme, BLOCK)
    cid = pending(srv, srv.acme)
    before = srv.store.stats().stored_bytes
    wrong = block_id(b"not these bytes")
    r = put_v3(srv, srv.acme, cid, delta_frame(CHANGED, BLOCK, claimed=wrong))
    assert r.status_code == 422 and r.json()["error"]["type"] == "BlockHashMismatch"
    assert srv.store.context.catalog.get_block(wrong) is None
    assert srv.store.context.catalog.get_block(block_id(CHANGED)) is None
    assert srv.store.stats().stored_bytes == before


def test_a_payload_that_does_not_decode_is_422(srv):
    committed(srv, srv.acme, BLOCK)
    cid = pending(srv, srv.acme)
    junk = SentBlock(
        block_id(CHANGED), b"\x04\x00garbage", len(CHANGED), Codec.BIASED_DELTA,
        block_id(BLOCK), 4, "w#0",
    )  # fmt: skip
    r = put_v3(srv, srv.acme, cid, frames_v3([junk]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "undecodable_block"
    assert srv.store.context.catalog.get_block(block_id(CHANGED)) is None


def test_raw_lengths_past_the_batch_limit_are_413(srv):
    cid = pending(srv, srv.acme)
    cap = srv.client.get("/v2/store", headers=srv.acme).json()["maxBlockBatchBytes"]
    zeros = SentBlock(block_id(b"z"), b"", 0, Codec.ZSTD, None, None, None)
    header = struct.pack("<32sIIBBH", zeros.block_id, 0, cap + 1, Codec.ZSTD, 0, 0)
    assert put_v3(srv, srv.acme, cid, header).status_code == 413


@pytest.mark.parametrize("codec", sorted(SENDABLE - {Codec.RAW}))
def test_junk_payloads_of_every_codec_are_refused_not_crashed_on(store, codec):
    """A client's payload is untrusted input to the decoders: cut-short, bit-flipped
    and random payloads give UndecodableBlock or BlockHashMismatch, and nothing stored."""
    pending = store.create_pending("job_junk", tenant="t")
    upload = store.resume_upload(pending.checkpoint_id, tenant="t")
    upload.put_blocks([(block_id(BLOCK), BLOCK, 4, "w#0")])
    upload.flush()
    good_codec, good = (
        BlockCodec().encode_delta(memoryview(CHANGED), BLOCK, 4)
        if codec == Codec.BIASED_DELTA
        else BlockCodec().encode_prefixed(memoryview(CHANGED), BLOCK, len(CHANGED))
        if codec == Codec.ZSTD_PREFIX
        else BlockCodec().encode(memoryview(CHANGED), 4, aligned=True)
    )
    rng = np.random.default_rng(codec)
    junk = [bytes(good[:cut]) for cut in (0, 1, 2, 7, len(good) // 2, len(good) - 1)]
    for _ in range(20):
        flipped = bytearray(good)
        flipped[int(rng.integers(0, len(flipped)))] ^= 1 << int(rng.integers(0, 8))
        junk.append(bytes(flipped))
    junk += [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (3, 40, 5000)]
    base = block_id(BLOCK) if codec in (Codec.BIASED_DELTA, Codec.ZSTD_PREFIX) else None
    for payload in junk:
        sent = SentBlock(block_id(CHANGED), payload, len(CHANGED), codec, base, 4, "w#0")
        with pytest.raises((UndecodableBlock, BlockHashMismatch)):
            upload.put_sent([sent])
    assert good_codec in SENDABLE
    upload.put_sent([SentBlock(block_id(CHANGED), good, len(CHANGED), good_codec, base, 4, "w#0")])
    upload.flush()
    assert store.context.catalog.get_block(block_id(CHANGED)) is not None


def test_a_server_that_takes_no_version_3_frames_gets_raw_blocks(client, srv, tmp_path):
    first, second = tmp_path / "step_1.safetensors", tmp_path / "step_2.safetensors"
    save(first, 1)
    data = save(second, 2)
    client.put(JOB, first)
    sent = client.bytes_sent
    assert 3 in client.info()["blockFrameVersions"]
    client.info()["blockFrameVersions"] = [1, 2]  # as an older server answers
    record = client.put(JOB, second)
    assert client.bytes_sent - sent > 0.9 * sent
    assert restored(client, record.checkpoint_id, tmp_path) == data


def test_deltas_the_server_refuses_are_sent_again_raw(client, srv, tmp_path, monkeypatch):
    from ckptstore.store.uploads import Upload

    first, second = tmp_path / "step_1.safetensors", tmp_path / "step_2.safetensors"
    save(first, 1)
    data = save(second, 2)
    client.put(JOB, first)
    sent = client.bytes_sent
    refused = []

    def refuse(self, blocks, max_bytes):  # as for a base the server no longer has
        for block in blocks:
            if block.base_id is not None:
                refused.append(block.block_id)
                raise DeltaBaseUnavailable(block.block_id.hex(), block.base_id.hex())
        return {}

    monkeypatch.setattr(Upload, "_bases", refuse)
    record = client.put(JOB, second)
    assert refused and client.bytes_sent - sent > 0.9 * sent
    assert restored(client, record.checkpoint_id, tmp_path) == data


def test_deltas_naming_more_base_bytes_than_a_batch_may_hold_are_refused(tmp_path):
    """Every base a batch names is read into memory to rebuild it: tiny deltas on many
    large bases of the tenant's own would make a small request cost the server their
    whole size. The bases' raw bytes count against the batch limit too."""
    server = make_server(tmp_path, max_block_batch_bytes=2_500_000)
    with server.client:
        bases = [
            np.random.default_rng(10 + i).standard_normal(250_000).astype(np.float32).tobytes()
            for i in range(3)
        ]
        for base in bases:
            committed(server, server.acme, base)
        cid = pending(server, server.acme)
        sent = []
        for base in bases:
            data = base[:5000]
            codec, payload = BlockCodec().encode_prefixed(memoryview(data), base, len(data))
            sent.append(
                SentBlock(block_id(data), payload, len(data), codec, block_id(base), 4, "w#0")
            )
        r = put_v3(server, server.acme, cid, frames_v3(sent))
        assert r.status_code == 422 and r.json()["error"]["code"] == "delta_bases_too_large"
        assert all(server.store.context.catalog.get_block(s.block_id) is None for s in sent)
        # two bases fit: the same deltas in two batches are taken
        assert put_v3(server, server.acme, cid, frames_v3(sent[:2])).status_code == 204
        assert put_v3(server, server.acme, cid, frames_v3(sent[2:])).status_code == 204
