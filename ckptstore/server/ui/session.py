"""The web interface's session: a signed cookie naming the caller's API key, and its
CSRF token.

The cookie holds the SHA-256 of the key (never the key itself), the tenant and a
random CSRF secret, signed with the server's signing keys under a salt of its own
and timestamped, so it expires. Every request checks that the key is still
active, so revoking the key ends its sessions too. Forms that change something
carry the CSRF secret; a request whose form lacks it is refused.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from ckptstore.server.auth import key_for, key_hash
from ckptstore.store.catalog.base import Catalog

COOKIE = "ckptstore_session"
SALT = "ckptstore.ui-session.v1"
MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    tenant: str
    csrf_token: str
    admin: bool


class _ClockSigner(TimestampSigner):
    """itsdangerous' timestamp signer reading the server's clock (tests inject one)."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class SessionCodec:
    """Makes and reads session cookies; the newest signing key signs, all verify."""

    def __init__(self, keys: tuple[str, ...], clock: Callable[[], float]) -> None:
        self._serializer = URLSafeTimedSerializer(
            list(keys), salt=SALT, signer=_ClockSigner, signer_kwargs={"clock": clock}
        )

    def sign_in(self, catalog: Catalog, api_key: str) -> tuple[str, Session] | None:
        """The cookie value and session for a valid, active key; None otherwise."""
        record = key_for(catalog, f"Bearer {api_key.strip()}")
        if record is None:
            return None
        csrf = secrets.token_urlsafe(24)
        payload = {"k": key_hash(api_key.strip()).hex(), "t": record.tenant_id, "c": csrf}
        session = Session(record.tenant_id, csrf, record.admin)
        return self._serializer.dumps(payload), session

    def read(self, catalog: Catalog, cookie: str | None) -> Session | None:
        """The session of a cookie that is well signed, fresh, and whose key is active."""
        if not cookie:
            return None
        try:
            payload = self._serializer.loads(cookie, max_age=MAX_AGE_S)
            digest = bytes.fromhex(payload["k"])
            tenant, csrf = str(payload["t"]), str(payload["c"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        record = catalog.active_key(digest)
        if record is None or record.tenant_id != tenant:
            return None
        return Session(tenant, csrf, record.admin)


def csrf_matches(session: Session, given: object) -> bool:
    """Whether a form's token is the session's (compared in constant time)."""
    return isinstance(given, str) and hmac.compare_digest(given, session.csrf_token)
