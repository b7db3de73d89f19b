"""Signed download URLs: HMAC (itsdangerous) over tenant, checkpoint, expiry and, for
one file of a folder checkpoint, the file's path.

A URL carries the checkpoint id (and path), its expiry (Unix seconds) and the signature;
the tenant is not in the URL but is part of what is signed, so a URL only
ever opens the checkpoint of the tenant it was made for. Keys rotate: the
newest signs, every configured key verifies.
"""

from __future__ import annotations

import hashlib
import re
from base64 import urlsafe_b64encode
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from itsdangerous import Signer
from itsdangerous.encoding import base64_decode, base64_encode

SALT = "ckptstore.signed-download.v1"

# One spelling per URL: the expiry in plain decimal (no sign, no leading zero), the
# signature in unpadded URL-safe base64 exactly as ``sign`` writes it. A URL is a
# bearer credential; variants of one would each look new to a cache or a deny list.
_EXPIRES = re.compile(r"[1-9][0-9]{0,15}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{1,128}")


class SignatureInvalid(Exception):
    """The URL was altered or signed with a key no longer configured."""


class SignatureExpired(Exception):
    """The URL was valid but its hour has passed."""


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: int


class _KeyCachingSigner(Signer):
    """itsdangerous' Signer (HMAC-SHA1, its default) that derives each secret's signing
    key once instead of for every signature, and hands hmac hashlib's own SHA-1, which
    takes OpenSSL's HMAC instead of the pure-Python one that itsdangerous' wrapper
    function gets: the same signatures, made faster for pages of URLs."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys, salt=SALT, digest_method=hashlib.sha1)
        self._derived: dict[str | bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        key = self._derived.get(secret_key)
        if key is None:
            key = self._derived[secret_key] = super().derive_key(secret_key)
        return key


class UrlSigner:
    # URLs signed in the current second, kept until the clock's second moves on: a URL
    # depends only on what it opens and its expiry, and a list polled by several
    # clients signs the same page again within that second
    MAX_CACHED = 8192

    def __init__(
        self, keys: tuple[str, ...], base_url: str, ttl_s: int, clock: Callable[[], float]
    ):
        self._signer = _KeyCachingSigner(list(keys))
        # ``sign`` makes what the signer's get_signature makes with the newest key, from
        # that key's HMAC pads hashed once (a page of 50 URLs is signed per list request)
        self._hmac = _PaddedHmac(self._signer.derive_key())
        self._base_url = base_url
        self._ttl_s = ttl_s
        self._clock = clock
        self._signed: dict[tuple[str, str, str | None, int], SignedUrl] = {}
        self._signed_for = 0  # the expiry of the URLs in _signed

    @staticmethod
    def _message(tenant_id: str, checkpoint_id: str, expires_at: int, path: str | None) -> bytes:
        if path is None:
            return f"{tenant_id}\n{checkpoint_id}\n{expires_at}".encode()
        # a file's URL signs one more line (a path), so it never passes for the whole
        return f"{tenant_id}\n{checkpoint_id}\n{expires_at}\nfile\n{path}".encode()

    def sign(self, tenant_id: str, checkpoint_id: str, path: str | None = None) -> SignedUrl:
        """The URL of the checkpoint's download, or with ``path`` of one of its files."""
        expires_at = int(self._clock()) + self._ttl_s
        if expires_at != self._signed_for:
            self._signed = {}
            self._signed_for = expires_at
        # the expiry is part of the key: a thread that signs as the second turns may
        # store a URL of the second before, which then is never handed out
        key = (tenant_id, checkpoint_id, path, expires_at)
        signed = self._signed.get(key)
        if signed is None:
            signed = self._new_url(tenant_id, checkpoint_id, path, expires_at)
            if len(self._signed) < self.MAX_CACHED:
                self._signed[key] = signed
        return signed

    def _new_url(
        self, tenant_id: str, checkpoint_id: str, path: str | None, expires_at: int
    ) -> SignedUrl:
        message = self._message(tenant_id, checkpoint_id, expires_at, path)
        signature = self._hmac.signature(message)
        where = _quoted(checkpoint_id)
        if path is not None:
            where += f"/files/{quote(path, safe='/')}"
        url = f"{self._base_url}/signed/{where}?expires={expires_at}&signature={signature}"
        return SignedUrl(url, expires_at)

    def verify(
        self,
        tenant_id: str,
        checkpoint_id: str,
        expires: str,
        signature: str,
        path: str | None = None,
    ) -> None:
        """Raises SignatureInvalid or SignatureExpired unless the URL is good now and
        spelled as ``sign`` spells it."""
        if not _EXPIRES.fullmatch(expires):
            raise SignatureInvalid("expires is not a plain decimal number")
        expires_at = int(expires)
        if not _SIGNATURE.fullmatch(signature) or not _canonical(signature):
            raise SignatureInvalid("signature is not in its canonical form")
        message = self._message(tenant_id, checkpoint_id, expires_at, path)
        if not self._signer.verify_signature(message, signature.encode()):
            raise SignatureInvalid("signature does not match")
        if self._clock() > expires_at:
            raise SignatureExpired(f"expired at {expires_at}")


class _PaddedHmac:
    """HMAC-SHA1 (RFC 2104) under one key, in URL-safe base64 without padding: what
    itsdangerous' ``Signer.get_signature`` gives for the key it derived. The hashes of
    the key's inner and outer pads are computed once and copied for each message,
    where OpenSSL's one-shot HMAC sets the key up again on every call."""

    BLOCK_BYTES = 64  # SHA-1's block

    def __init__(self, key: bytes) -> None:
        if len(key) > self.BLOCK_BYTES:
            key = hashlib.sha1(key).digest()
        key = key.ljust(self.BLOCK_BYTES, b"\0")
        self._inner = hashlib.sha1(key.translate(_XOR_INNER))
        self._outer = hashlib.sha1(key.translate(_XOR_OUTER))

    def signature(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return urlsafe_b64encode(outer.digest()).rstrip(b"=").decode()


_XOR_INNER = bytes(x ^ 0x36 for x in range(256))
_XOR_OUTER = bytes(x ^ 0x5C for x in range(256))
# checkpoint ids repeat from one list answer to the next
_quoted = lru_cache(maxsize=4096)(quote)


def _canonical(signature: str) -> bool:
    """Whether ``signature`` is the one base64 spelling of the bytes it decodes to
    (base64 lets the last character's unused bits vary)."""
    try:
        return base64_encode(base64_decode(signature)) == signature.encode()
    except Exception:  # noqa: BLE001 - itsdangerous raises BadData or binascii errors
        return False
