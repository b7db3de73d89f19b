"""API keys: ``Authorization: Bearer ck_<keyid>_<secret>``; stored as SHA-256 hashes.

Keys are random 256-bit secrets, so a fast hash is enough: there is nothing
to brute-force. Each key belongs to one tenant; an admin key (an operator's)
may also run the store-wide operations: GC on demand and the metrics.

The server keeps the keys it found valid for ``CKPTSTORE_API_KEY_CACHE_S``
(``KeyCache``), so that a client's requests do not each look their key up in
the catalog: a revoked key is refused by every server process at most that
long after ``keys revoke``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable

from ckptstore.store.catalog.base import ApiKeyRecord, Catalog

_KEY = re.compile(r"ck_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def create_api_key(
    catalog: Catalog, tenant_id: str, name: str, now: float, *, admin: bool = False
) -> tuple[ApiKeyRecord, str]:
    """A new key for ``tenant_id`` (``admin``: an operator's, which may also run
    store-wide operations); the plain key is returned once and never stored."""
    if not _TENANT.fullmatch(tenant_id):
        raise ValueError(f"invalid tenant {tenant_id!r}: 1-64 characters of A-Z a-z 0-9 . _ -")
    key_id = secrets.token_hex(4)
    key = f"ck_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(key_id, tenant_id, name, now, None, admin=admin)
    catalog.add_api_key(record, key_hash(key))
    return record, key


def key_for(catalog: Catalog, authorization: str | None) -> ApiKeyRecord | None:
    """The well-formed, unrevoked bearer key of an Authorization header, else None."""
    key = _bearer_key(authorization)
    return None if key is None else catalog.active_key(key_hash(key))


def _bearer_key(authorization: str | None) -> str | None:
    """The key of an Authorization header, if it is a well-formed bearer key."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not _KEY.fullmatch(key):
        return None
    return key


class KeyCache:
    """``key_for`` that remembers each key it found valid for ``ttl_s`` seconds of
    ``clock``: a revoked key is refused at most ``ttl_s`` after its revocation. A key
    not found is looked up again each time, so a new key works at once; ``ttl_s``
    of 0 looks every key up."""

    MAX_KEYS = 4096  # past this many keys in one window, the cache starts over

    def __init__(self, catalog: Catalog, ttl_s: float, clock: Callable[[], float]) -> None:
        self._catalog = catalog
        self._ttl_s = ttl_s
        self._clock = clock
        self._found: dict[bytes, tuple[ApiKeyRecord, float]] = {}

    def key_for(self, authorization: str | None) -> ApiKeyRecord | None:
        key = _bearer_key(authorization)
        if key is None:
            return None
        digest = key_hash(key)
        if self._ttl_s <= 0:
            return self._catalog.active_key(digest)
        now = self._clock()
        cached = self._found.get(digest)
        if cached is not None and 0 <= now - cached[1] < self._ttl_s:
            return cached[0]
        record = self._catalog.active_key(digest)
        if record is None:
            self._found.pop(digest, None)
            return None
        if len(self._found) >= self.MAX_KEYS:
            self._found.clear()
        self._found[digest] = (record, now)
        return record
