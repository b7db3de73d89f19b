"""API keys: ``Authorization: Bearer ck_<keyid>_<secret>``; stored as SHA-256 hashes.

Keys are random 256-bit secrets, so a fast hash is enough: there is nothing
to brute-force. Each key belongs to one tenant; an admin key (an operator's)
may also run the store-wide operations: GC on demand and the metrics.
"""

from __future__ import annotations

import hashlib
import re
import secrets

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
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not _KEY.fullmatch(key):
        return None
    return catalog.active_key(key_hash(key))
