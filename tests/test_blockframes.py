"""Parsing uploaded block frames: pure functions raising BadBlockFrame, and the route
answering a malformed batch with 4xx JSON naming the problem, storing nothing."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from ckptstore.blockframes import (
    FRAMES_V2,
    FRAMES_V3,
    SentBlock,
    frames_v2,
    frames_v3,
    is_v2,
    is_v3,
    parse_frames,
    parse_frames_v3,
)
from ckptstore.errors import BadBlockFrame, InvalidArgument
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.codecs.ids import Codec
from ckptstore.store.ids import block_id
from tests.server_helpers import JOB, Server, frames, make_server

BLOCK = b"w" * 4096
BID = block_id(BLOCK)


def test_frames_v2_round_trip_through_the_parser() -> None:
    blocks = [(BID, BLOCK, 4, "w#0"), (block_id(b"opaque"), b"opaque", 0, None)]
    parsed = parse_frames(frames_v2(blocks), v2=True)
    assert [(bid, bytes(data), width, slot) for bid, data, width, slot in parsed] == [
        (BID, BLOCK, 4, "w#0"),
        (block_id(b"opaque"), b"opaque", None, None),
    ]


def test_version_1_frames_parse_without_width_or_slot() -> None:
    parsed = parse_frames(frames([(BID, BLOCK)]), v2=False)
    assert [(bid, bytes(data), width, slot) for bid, data, width, slot in parsed] == [
        (BID, BLOCK, None, None)
    ]


def test_content_type_of_version_2_ignores_spaces_and_case() -> None:
    assert is_v2("Application/X-Ckptstore-Blocks;Version=2") and is_v2(FRAMES_V2)
    assert not is_v2("application/octet-stream")


GOOD_V1 = frames([(BID, BLOCK)])
GOOD_V2 = frames_v2([(BID, BLOCK, 4, "w#0")])
MALFORMED = [
    ("v1 truncated header", GOOD_V1 + BID[:10], False, len(GOOD_V1), "truncated frame header"),
    ("v1 length past the end", GOOD_V1[:-1], False, 0, "runs past the end"),
    ("v2 truncated header", GOOD_V2[:20], True, 0, "truncated frame header"),
    ("v2 length past the end", GOOD_V2 + GOOD_V2[:-5], True, len(GOOD_V2), "past the end"),
    (
        "v2 width",
        struct.pack("<32sIBH", BID, 1, 3, 0) + b"x",
        True,
        0,
        "width 3",
    ),
    ("v2 slot without width", struct.pack("<32sIBH", BID, 1, 0, 1) + b"sx", True, 0, "slot"),
    ("v2 slot not UTF-8", struct.pack("<32sIBH", BID, 1, 4, 2) + b"\xff\xfex", True, 0, "UTF-8"),
]


@pytest.mark.parametrize(
    "body, v2, offset, problem", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_frames_raise_bad_block_frame_naming_offset_and_problem(
    body: bytes, v2: bool, offset: int, problem: str
) -> None:
    with pytest.raises(BadBlockFrame) as info:
        parse_frames(body, v2=v2)
    assert isinstance(info.value, InvalidArgument) and info.value.offset == offset
    assert problem in info.value.problem and problem in str(info.value)


@pytest.fixture
def srv(tmp_path) -> Iterator[Server]:
    server = make_server(tmp_path)
    with server.client:
        yield server


def put_blocks(srv: Server, body: bytes, v2: bool) -> tuple[int, dict]:
    r = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json={"type": "automatic"}
    )
    headers = srv.acme | ({"Content-Type": FRAMES_V2} if v2 else {})
    answer = srv.client.put(
        f"/v2/training/checkpoints/{r.json()['checkpointId']}/blocks",
        headers=headers,
        content=body,
    )
    return answer.status_code, answer.json()


@pytest.mark.parametrize(
    "body, v2, offset, problem", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_batch_is_400_json_naming_the_problem_and_stores_nothing(
    srv: Server, body: bytes, v2: bool, offset: int, problem: str
) -> None:
    status, answer = put_blocks(srv, body, v2)
    error = answer["error"]
    assert (status, error["code"], error["type"]) == (400, "malformed_batch", "BadBlockFrame")
    assert error["fields"]["offset"] == offset and problem in error["message"]
    assert srv.store.stats().blocks == 0


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_block_with_the_wrong_hash_is_422_and_stores_nothing(srv: Server, v2: bool) -> None:
    claimed = block_id(b"something else")
    body = frames_v2([(claimed, BLOCK, 4, "w#0")]) if v2 else frames([(claimed, BLOCK)])
    status, answer = put_blocks(srv, body, v2)
    error = answer["error"]
    assert (status, error["type"]) == (422, "BlockHashMismatch")
    assert error["fields"] == {"claimedId": claimed.hex(), "actualId": BID.hex()}
    assert srv.store.stats().blocks == 0


# -- version 3: blocks encoded, perhaps as deltas on a base ---------------------------
DELTA = SentBlock(BID, b"payload", len(BLOCK), Codec.BIASED_DELTA, block_id(b"base"), 4, "w#0")
WHOLE = SentBlock(BID, b"zstd frame", len(BLOCK), Codec.ZSTD, None, None, None)
RAW = SentBlock(block_id(b"opaque"), b"opaque", 6, Codec.RAW, None, None, None)


def test_frames_v3_round_trip_through_the_parser() -> None:
    parsed = parse_frames_v3(frames_v3([DELTA, WHOLE, RAW]))
    assert [s._replace(payload=bytes(s.payload)) for s in parsed] == [DELTA, WHOLE, RAW]
    assert is_v3("Application/X-Ckptstore-Blocks;Version=3") and not is_v3(FRAMES_V2)


def v3_header(codec: int, length: int, raw_len: int, width: int = 0, slot_len: int = 0) -> bytes:
    return struct.pack("<32sIIBBH", BID, length, raw_len, codec, width, slot_len)


GOOD_V3 = frames_v3([DELTA])
MALFORMED_V3 = [
    ("truncated header", GOOD_V3 + BID, len(GOOD_V3), "truncated frame header"),
    ("unknown codec", v3_header(99, 1, 1) + b"x", 0, "codec 99"),
    ("read-only codec", v3_header(Codec.DELTA_PLANES, 1, 1) + BID + b"x", 0, "codec 3"),
    ("raw of another length", v3_header(Codec.RAW, 1, 2) + b"x", 0, "raw payload of 1 bytes"),
    ("base cut short", v3_header(Codec.BIASED_DELTA, 0, 8) + BID[:5], 0, "past the end"),
    ("payload past the end", GOOD_V3[:-1], 0, "past the end"),
    ("width", v3_header(Codec.ZSTD, 1, 9, width=3) + b"x", 0, "width 3"),
    ("slot without width", v3_header(Codec.ZSTD, 1, 9, slot_len=1) + b"sx", 0, "slot"),
]


@pytest.mark.parametrize(
    "body, offset, problem", [m[1:] for m in MALFORMED_V3], ids=[m[0] for m in MALFORMED_V3]
)
def test_malformed_v3_frames_are_400_naming_the_problem_and_store_nothing(
    srv: Server, body: bytes, offset: int, problem: str
) -> None:
    with pytest.raises(BadBlockFrame) as info:
        parse_frames_v3(body)
    assert info.value.offset == offset and problem in info.value.problem
    r = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json={"type": "automatic"}
    )
    answer = srv.client.put(
        f"/v2/training/checkpoints/{r.json()['checkpointId']}/blocks",
        headers=srv.acme | {"Content-Type": FRAMES_V3},
        content=body,
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "malformed_batch"
    assert srv.store.stats().blocks == 0


def test_v3_block_with_the_wrong_hash_is_422_and_stores_nothing(srv: Server) -> None:
    claimed = block_id(b"something else")
    codec, payload = BlockCodec().encode(memoryview(BLOCK), 4, aligned=True)
    body = frames_v3([SentBlock(claimed, payload, len(BLOCK), codec, None, 4, "w#0")])
    r = srv.client.post(
        f"/v2/training/jobs/{JOB}/checkpoints", headers=srv.acme, json={"type": "automatic"}
    )
    answer = srv.client.put(
        f"/v2/training/checkpoints/{r.json()['checkpointId']}/blocks",
        headers=srv.acme | {"Content-Type": FRAMES_V3},
        content=body,
    )
    assert (answer.status_code, answer.json()["error"]["type"]) == (422, "BlockHashMismatch")
    assert answer.json()["error"]["fields"]["actualId"] == BID.hex()
    assert srv.store.stats().blocks == 0
