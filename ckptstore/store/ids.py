"""Identifiers: block ids (BLAKE3 of raw bytes), checkpoint, pack and upload ids."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

import blake3

from ckptstore.errors import InvalidArgument, InvalidJobId

BLOCK_ID_LEN = 32
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CHECKPOINT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX_ID = re.compile(r"[0-9a-f]{64}")


def block_id(raw: bytes | memoryview) -> bytes:
    """The 32-byte BLAKE3 digest that names a block of raw bytes."""
    return blake3.blake3(raw).digest()


def content_digest(block_ids: Iterable[bytes]) -> str:
    """The digest of a checkpoint's content (its block ids, in order): the download ETag.

    Equal bytes cut by the same chunker give equal digests, so a client can
    check a download by cutting and hashing what it received.
    """
    hasher = blake3.blake3()
    for bid in block_ids:
        hasher.update(bid)
    return hasher.hexdigest()[:32]


def parse_block_id(text: str) -> bytes:
    """A block id from its 64-character lower-case hex form."""
    if not isinstance(text, str) or not _HEX_ID.fullmatch(text):
        raise InvalidArgument("blockId", text, "64 lower-case hex characters")
    return bytes.fromhex(text)


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidJobId(job_id)
    return job_id


def check_checkpoint_id(checkpoint_id: str) -> str:
    if not isinstance(checkpoint_id, str) or not _CHECKPOINT_ID.fullmatch(checkpoint_id):
        raise InvalidArgument(
            "checkpointId", checkpoint_id, "1-128 characters of A-Z a-z 0-9 . _ -"
        )
    return checkpoint_id


def new_checkpoint_id() -> str:
    return "ckpt_" + secrets.token_hex(10)


def new_pack_id() -> str:
    return secrets.token_hex(16)


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_hex(8)


def new_upload_id() -> str:
    return "upl_" + secrets.token_hex(12)


def upload_holder(checkpoint_id: str) -> str:
    """The lease holder of a pending checkpoint's dedup-aware upload: the same for every
    request that resumes it, so any of them may commit, and GC can end its leases."""
    return f"upl_{checkpoint_id}"
