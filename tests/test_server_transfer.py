"""Signed downloads (Range, resume, tamper, expiry, rotation) and dedup-aware uploads."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlparse

import pytest

from ckptstore.store.ids import block_id
from tests.conftest import client_blocks, random_bytes
from tests.server_helpers import JOB, frames, make_server

MB = 1_000_000
DATA = random_bytes(3 * MB, seed=77)


@pytest.fixture
def srv(tmp_path):
    server = make_server(tmp_path)
    with server.client:
        yield server


def pending(srv, headers=None, **body):
    r = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints",
        headers=headers or srv.acme,
        json=body or {"type": "automatic", "epoch": 1},
    )
    assert r.status_code == 201
    return r.json()["checkpointId"]


@pytest.fixture
def ready(srv):
    cid = pending(srv)
    body = srv.client.put(
        f"/v2/training/checkpoints/{cid}/data", headers=srv.acme, content=DATA
    ).json()
    return body


# -- signed downloads ----------------------------------------------------------
def test_signed_url_downloads_without_any_header(srv, ready):
    r = srv.client.get(ready["downloadUrl"])
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["content-length"] == str(len(DATA))
    assert r.headers["accept-ranges"] == "bytes"
    name = f"{ready['checkpointId']}.ckpt"  # a stream has the default name
    assert r.headers["content-disposition"] == (
        f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
    )
    assert r.headers["etag"].startswith('"')
    query = parse_qs(urlparse(ready["downloadUrl"]).query)
    assert set(query) == {"expires", "signature"}
    assert int(query["expires"][0]) == int(srv.clock.now) + 3600


@pytest.mark.parametrize(
    "header, start, end",
    [
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),
        ("bytes=2999990-", 2_999_990, 3_000_000),
        ("bytes=-10", 2_999_990, 3_000_000),
        ("bytes=2999990-9999999", 2_999_990, 3_000_000),
    ],
)
def test_range_requests_return_206_with_the_slice(srv, ready, header, start, end):
    r = srv.client.get(ready["downloadUrl"], headers={"Range": header})
    assert r.status_code == 206 and r.content == DATA[start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert r.headers["content-length"] == str(end - start)


def test_a_range_request_decodes_only_the_blocks_under_it(srv, ready, monkeypatch):
    import ckptstore.store.restore as restore

    assert srv.store.context.config.readahead_bytes > len(DATA)  # would decode it all
    decoded: list[int] = []
    load_each = restore.load_each

    def counting(ctx, records):
        decoded.extend(r.raw_len for r in records)
        return load_each(ctx, records)

    monkeypatch.setattr(restore, "load_each", counting)
    r = srv.client.get(ready["downloadUrl"], headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == DATA[100:200]
    assert 0 < sum(decoded) < len(DATA) / 4  # the first block(s), not the whole download


def test_download_resumes_in_several_pieces(srv, ready):
    got = bytearray()
    for piece in range(4):
        headers = {"Range": f"bytes={len(got)}-"} if got else {}
        with srv.client.stream("GET", ready["downloadUrl"], headers=headers) as r:
            for chunk in r.iter_bytes():
                got += chunk
                if len(got) >= (piece + 1) * len(DATA) // 4:
                    break  # the connection drops mid-transfer
    assert bytes(got[: len(DATA)]) == DATA


def test_unsatisfiable_range_is_416(srv, ready):
    r = srv.client.get(ready["downloadUrl"], headers={"Range": f"bytes={len(DATA)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(DATA)}"


def test_if_range_with_another_etag_sends_everything(srv, ready):
    r = srv.client.get(ready["downloadUrl"], headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert r.status_code == 200 and r.content == DATA


def test_head_gives_headers_only(srv, ready):
    r = srv.client.head(ready["downloadUrl"])
    assert (
        r.status_code == 200 and r.content == b"" and r.headers["content-length"] == str(len(DATA))
    )


@pytest.mark.parametrize("change", ["signature", "expires", "checkpoint"])
def test_tampered_url_is_403_with_a_reason(srv, ready, change):
    url = ready["downloadUrl"]
    query = parse_qs(urlparse(url).query)
    if change == "signature":
        signature = query["signature"][0]
        changed = ("B" if signature[0] == "A" else "A") + signature[1:]  # always a change
        url = url.replace(signature, changed)
    elif change == "expires":
        url = url.replace(
            f"expires={query['expires'][0]}", f"expires={int(query['expires'][0]) + 9999}"
        )
    else:
        other = srv.client.put(
            f"/v2/training/checkpoints/{pending(srv)}/data", headers=srv.acme, content=b"other"
        ).json()
        url = url.replace(ready["checkpointId"], other["checkpointId"])
    r = srv.client.get(url)
    assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_signature"


def _respelled(url: str, expires: str, signature: str, respell: str) -> str:
    base = url.split("?")[0]
    return {
        "padded signature": f"{base}?expires={expires}&signature={signature}=",
        "escaped signature": f"{base}?expires={expires}&signature={signature[:-1]}%2B",
        "loose base64 bits": f"{base}?expires={expires}&signature={signature[:-1]}"
        + chr(ord(signature[-1]) ^ 1),
        "zero-led expires": f"{base}?expires=0{expires}&signature={signature}",
        "plus-signed expires": f"{base}?expires=%2B{expires}&signature={signature}",
        "expires twice": f"{base}?expires={expires}&expires={expires}&signature={signature}",
    }[respell]


@pytest.mark.parametrize(
    "respell",
    [
        "padded signature",
        "escaped signature",
        "loose base64 bits",
        "zero-led expires",
        "plus-signed expires",
        "expires twice",
    ],
)
def test_signed_url_opens_only_in_its_own_spelling(srv, ready, respell):
    query = parse_qs(urlparse(ready["downloadUrl"]).query)
    url = _respelled(ready["downloadUrl"], query["expires"][0], query["signature"][0], respell)
    r = srv.client.get(url)
    assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_signature"
    assert srv.client.get(ready["downloadUrl"]).status_code == 200


def test_signed_url_of_an_unknown_id_fails_as_a_wrong_signature(srv, ready):
    known = srv.client.get(f"/signed/{ready['checkpointId']}")
    unknown = srv.client.get("/signed/ckpt_doesnotexist0000")
    assert known.status_code == unknown.status_code == 403
    assert known.json() == unknown.json()
    forged = ready["downloadUrl"].replace(ready["checkpointId"], "ckpt_doesnotexist0000")
    assert (
        srv.client.get(forged).json()
        == srv.client.get(ready["downloadUrl"].replace("signature=", "signature=A")).json()
    )


def test_any_range_of_an_empty_checkpoint_is_416(srv):
    cid = pending(srv)
    empty = srv.client.put(f"/v2/training/checkpoints/{cid}/data", headers=srv.acme, content=b"")
    assert empty.status_code == 200
    for header in ("bytes=-5", "bytes=0-", "bytes=0-0"):
        r = srv.client.get(empty.json()["downloadUrl"], headers={"Range": header})
        assert r.status_code == 416 and r.headers["content-range"] == "bytes */0"
        assert r.json()["error"]["code"] == "range_not_satisfiable"


def test_range_with_thousands_of_digits_is_answered(srv, ready):
    huge = "9" * 4301
    r = srv.client.get(ready["downloadUrl"], headers={"Range": f"bytes=0-{huge}"})
    assert r.status_code == 206 and r.content == DATA
    r = srv.client.get(ready["downloadUrl"], headers={"Range": f"bytes={huge}-"})
    assert r.status_code == 416 and r.json()["error"]["code"] == "range_not_satisfiable"


def test_url_expires_after_one_hour(srv, ready):
    srv.clock.advance(3599)
    assert srv.client.get(ready["downloadUrl"], headers={"Range": "bytes=0-0"}).status_code == 206
    srv.clock.advance(2)
    r = srv.client.get(ready["downloadUrl"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "url_expired"
    fresh = srv.client.get(
        f"/v2/training/checkpoints/{ready['checkpointId']}", headers=srv.acme
    ).json()
    assert srv.client.get(fresh["downloadUrl"]).content == DATA


def test_signing_keys_rotate(tmp_path):
    old = make_server(tmp_path / "a", signing_keys=("old-key",))
    with old.client:
        cid = pending(old)
        url = old.client.put(
            f"/v2/training/checkpoints/{cid}/data", headers=old.acme, content=b"rotated"
        ).json()["downloadUrl"]
    # the same data directory, served again with a new key added, then with the old removed
    from fastapi.testclient import TestClient

    from ckptstore.config import ServerSettings
    from ckptstore.server.app import create_app

    def serve(keys):
        from ckptstore import CheckpointStore
        from tests.conftest import TEST_CONFIG

        store = CheckpointStore.open(tmp_path / "a" / "data", config=TEST_CONFIG, clock=old.clock)
        settings = ServerSettings(data_dir=tmp_path / "a" / "data", signing_keys=keys)
        return TestClient(create_app(store, settings, clock=old.clock, close_store=True))

    with serve(("old-key", "new-key")) as both:
        assert both.get(url).content == b"rotated"  # old URLs still work
        new_url = both.get(f"/v2/training/checkpoints/{cid}", headers=old.acme).json()[
            "downloadUrl"
        ]
        assert both.get(new_url).content == b"rotated"
    with serve(("new-key",)) as only_new:
        assert only_new.get(url).status_code == 403  # removing the old key revokes its URLs
        assert only_new.get(new_url).content == b"rotated"


def test_pending_checkpoint_has_no_url_and_cannot_download(srv):
    cid = pending(srv)
    body = srv.client.get(f"/v2/training/checkpoints/{cid}", headers=srv.acme).json()
    assert body["downloadUrl"] is None and body["downloadUrlExpiresAt"] is None


# -- dedup-aware uploads --------------------------------------------------------
def dedup_upload(srv, data, headers=None):
    """The client side of the protocol; returns (checkpoint, bytes of block data sent)."""
    headers = headers or srv.acme
    cid = pending(srv, headers)
    blocks = client_blocks(srv.store, data)
    ids = [bid.hex() for bid, _ in blocks]
    r = srv.client.post(
        f"/v2/training/checkpoints/{cid}/blocks/missing", headers=headers, json={"blockIds": ids}
    )
    assert r.status_code == 200, r.text
    missing = set(r.json()["missing"])
    to_send = [(bid, b) for bid, b in blocks if bid.hex() in missing]
    for start in range(0, len(to_send), 4):
        body = frames(to_send[start : start + 4])
        r = srv.client.put(f"/v2/training/checkpoints/{cid}/blocks", headers=headers, content=body)
        assert r.status_code == 204, r.text
    r = srv.client.post(
        f"/v2/training/checkpoints/{cid}/commit", headers=headers, json={"blockIds": ids}
    )
    assert r.status_code == 200, r.text
    return r.json(), sum(len(b) for _, b in {bid: b for bid, b in to_send}.items())


def test_dedup_upload_round_trips(srv):
    record, sent = dedup_upload(srv, DATA)
    assert record["status"] == "ready" and record["sizeBytes"] == len(DATA) and sent == len(DATA)
    # random bytes are stored raw: what the checkpoint added, whatever request sent it
    assert len(DATA) < record["storedBytes"] < 1.01 * len(DATA)
    assert srv.client.get(record["downloadUrl"]).content == DATA


def test_unchanged_checkpoint_uploads_only_its_block_list(srv):
    dedup_upload(srv, DATA)
    record, sent = dedup_upload(srv, DATA)
    assert sent == 0 and record["storedBytes"] == 0
    assert srv.client.get(record["downloadUrl"]).content == DATA


def test_changed_checkpoint_uploads_about_the_change(srv):
    dedup_upload(srv, DATA)
    changed = DATA[:MB] + random_bytes(50_000, seed=5) + DATA[MB + 50_000 :]
    record, sent = dedup_upload(srv, changed)
    assert sent < 0.5 * MB  # the changed blocks, not the whole file
    assert srv.client.get(record["downloadUrl"]).content == changed


def test_block_with_wrong_id_is_rejected_422(srv):
    cid = pending(srv)
    body = frames([(block_id(b"claimed"), b"actual bytes")])
    r = srv.client.put(f"/v2/training/checkpoints/{cid}/blocks", headers=srv.acme, content=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "upload_error"
    assert srv.store.stats().blocks == 0


def test_commit_of_unsent_blocks_is_rejected_and_checkpoint_stays_pending(srv):
    cid = pending(srv)
    r = srv.client.post(
        f"/v2/training/checkpoints/{cid}/commit",
        headers=srv.acme,
        json={"blockIds": [block_id(b"never sent").hex()]},
    )
    assert r.status_code == 422 and "never" not in r.json()["error"]["message"]
    assert (
        srv.client.get(f"/v2/training/checkpoints/{cid}", headers=srv.acme).json()["status"]
        == "pending"
    )


def test_malformed_and_oversized_batches(tmp_path):
    srv = make_server(tmp_path, max_block_batch_bytes=1000)
    with srv.client:
        cid = pending(srv)
        url = f"/v2/training/checkpoints/{cid}/blocks"
        truncated = frames([(block_id(b"x" * 10), b"x" * 10)])[:-3]
        r = srv.client.put(url, headers=srv.acme, content=truncated)
        assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_batch"
        r = srv.client.put(
            url, headers=srv.acme, content=frames([(block_id(b"y" * 2000), b"y" * 2000)])
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        bad_id = srv.client.post(
            f"/v2/training/checkpoints/{cid}/blocks/missing",
            headers=srv.acme,
            json={"blockIds": ["xyz"]},
        )
        assert bad_id.status_code == 422 and "blockId" in bad_id.json()["error"]["message"]


def test_missing_does_not_reveal_another_tenants_blocks(srv):
    dedup_upload(srv, DATA)  # tenant acme stores it
    cid = pending(srv, srv.other)
    ids = [bid.hex() for bid, _ in client_blocks(srv.store, DATA)]
    r = srv.client.post(
        f"/v2/training/checkpoints/{cid}/blocks/missing", headers=srv.other, json={"blockIds": ids}
    )
    assert sorted(r.json()["missing"]) == sorted(set(ids))
    stored = srv.store.stats().stored_bytes
    record, _ = dedup_upload(srv, DATA, headers=srv.other)
    assert srv.store.stats().stored_bytes == stored  # verified, leased, not stored twice
    assert srv.client.get(record["downloadUrl"]).content == DATA


def test_concurrent_uploads_of_overlapping_data_end_bit_exact(srv):
    shared = random_bytes(2 * MB, seed=1)
    datas = [shared + random_bytes(500_000, seed=10 + i) for i in range(4)]
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            if i % 2:
                results[i] = dedup_upload(srv, datas[i])[0]
            else:
                cid = pending(srv)
                results[i] = srv.client.put(
                    f"/v2/training/checkpoints/{cid}/data", headers=srv.acme, content=datas[i]
                ).json()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, record in results.items():
        assert srv.client.get(record["downloadUrl"]).content == datas[i]
    assert srv.store.verify(read_data=True).ok


# -- version-2 frames: tensor width and slot, for deltas --------------------------
def v2_frame(bid: bytes, data: bytes, width: int, slot: bytes) -> bytes:
    import struct

    return struct.pack("<32sIBH", bid, len(data), width, len(slot)) + slot + data


@pytest.mark.parametrize(
    "width, slot, problem",
    [(3, b"w#0", "width 3"), (0, b"w#0", "slot without width"), (4, b"\xff\xfe", "UTF-8")],
)
def test_bad_v2_frames_are_rejected_400_and_store_nothing(srv, width, slot, problem):
    cid = pending(srv)
    data = b"z" * 4096
    r = srv.client.put(
        f"/v2/training/checkpoints/{cid}/blocks",
        headers=srv.acme | {"Content-Type": "application/x-ckptstore-blocks; version=2"},
        content=v2_frame(block_id(data), data, width, slot),
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_batch"
    assert problem in r.json()["error"]["message"]
    assert srv.store.stats().blocks == 0


@pytest.mark.parametrize("slots", [["a#0", "b#0"], ["w" * 6000]], ids=["count", "length"])
def test_commit_with_bad_slots_is_rejected_and_stays_pending(srv, slots):
    cid = pending(srv)
    data = b"q" * 5000
    srv.client.put(
        f"/v2/training/checkpoints/{cid}/blocks",
        headers=srv.acme,
        content=frames([(block_id(data), data)]),
    )
    r = srv.client.post(
        f"/v2/training/checkpoints/{cid}/commit",
        headers=srv.acme,
        json={"blockIds": [block_id(data).hex()], "slots": slots},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_argument"
    assert "slots" in r.json()["error"]["message"]
    status = srv.client.get(f"/v2/training/checkpoints/{cid}", headers=srv.acme).json()["status"]
    assert status == "pending"


def test_a_batch_with_one_wrong_id_stores_none_of_its_blocks(srv):
    cid = pending(srv)
    good = [(block_id(bytes([i]) * 5000), bytes([i]) * 5000) for i in range(3)]
    body = frames([*good, (block_id(b"claimed"), b"actual bytes")])
    r = srv.client.put(f"/v2/training/checkpoints/{cid}/blocks", headers=srv.acme, content=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "upload_error"
    assert srv.store.stats().blocks == 0


def test_block_upload_answers_204_with_no_body(srv):
    """A 204 with a body makes uvicorn drop the connection after the answer, so the
    client's next request on it fails and waits out a retry."""
    cid = pending(srv)
    data = b"n" * 5000
    r = srv.client.put(
        f"/v2/training/checkpoints/{cid}/blocks",
        headers=srv.acme,
        content=frames([(block_id(data), data)]),
    )
    assert r.status_code == 204 and r.content == b""
    assert "content-length" not in r.headers or r.headers["content-length"] == "0"


# -- body encodings --------------------------------------------------------------
def test_block_batch_of_several_zstd_frames_stores_every_frame(srv):
    import zstandard

    cid = pending(srv)
    blocks = client_blocks(srv.store, DATA)
    half = len(blocks) // 2
    body = zstandard.ZstdCompressor().compress(frames(blocks[:half]))
    body += zstandard.ZstdCompressor().compress(frames(blocks[half:]))
    base = f"/v2/training/checkpoints/{cid}"
    sent = srv.client.put(
        f"{base}/blocks", headers={**srv.acme, "Content-Encoding": "zstd"}, content=body
    )
    assert sent.status_code == 204
    ids = [bid.hex() for bid, _ in blocks]
    done = srv.client.post(f"{base}/commit", headers=srv.acme, json={"blockIds": ids})
    assert done.status_code == 200 and srv.client.get(done.json()["downloadUrl"]).content == DATA


def test_raw_upload_honours_content_encoding(srv):
    import zstandard

    packed = zstandard.ZstdCompressor().compress(DATA[: MB // 2])
    packed += zstandard.ZstdCompressor().compress(DATA[MB // 2 : MB])
    cid = pending(srv)
    url = f"/v2/training/checkpoints/{cid}/data"
    zstd = {**srv.acme, "Content-Encoding": "zstd"}
    stored = srv.client.put(url, headers=zstd, content=packed)
    assert stored.status_code == 200 and stored.json()["sizeBytes"] == MB
    assert srv.client.get(stored.json()["downloadUrl"]).content == DATA[:MB]
    other = pending(srv)
    url = f"/v2/training/checkpoints/{other}/data"
    gzip = srv.client.put(url, headers={**srv.acme, "Content-Encoding": "gzip"}, content=b"x")
    assert gzip.status_code == 415 and gzip.json()["error"]["code"] == "unsupported_encoding"
    cut = srv.client.put(url, headers=zstd, content=packed[:-100])
    assert cut.status_code == 400 and cut.json()["error"]["code"] == "malformed_body"
    garbage = srv.client.put(url, headers=zstd, content=b"not zstd at all")
    assert garbage.status_code == 400
    still = srv.client.get(f"/v2/training/checkpoints/{other}", headers=srv.acme).json()
    assert still["status"] == "pending"


def test_raw_upload_records_where_training_was(srv):
    cid = pending(srv, name="requested")
    url = f"/v2/training/checkpoints/{cid}/data"
    params = {"epoch": 3, "step": 30, "metrics": '{"loss": 0.25}'}
    stored = srv.client.put(url, headers=srv.acme, content=b"weights", params=params)
    assert stored.status_code == 200
    body = stored.json()
    assert (body["epoch"], body["step"], body["metrics"]) == (3, 30, {"loss": 0.25})
    other = pending(srv)
    bad = srv.client.put(
        f"/v2/training/checkpoints/{other}/data",
        headers=srv.acme,
        content=b"x",
        params={"metrics": "[1, 2]"},
    )
    assert bad.status_code == 422 and "metrics" in bad.json()["error"]["message"]
