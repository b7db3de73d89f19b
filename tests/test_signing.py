"""Signed download URLs keep their format: itsdangerous' HMAC-SHA1 with its default key
derivation, so URLs handed out before an upgrade (or a rolling restart) still open."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import Signer

from ckptstore.server.signing import SALT, SignatureExpired, SignatureInvalid, UrlSigner


def signature_of(url: str) -> tuple[str, str]:
    query = parse_qs(urlsplit(url).query)
    return query["expires"][0], query["signature"][0]


def test_signatures_are_itsdangerous_defaults_and_keys_rotate():
    now = [1_700_000_000.0]
    signer = UrlSigner(("old", "new"), "http://h", 3600, lambda: now[0])
    expires, signature = signature_of(signer.sign("acme", "ckpt_1").url)
    message = f"acme\nckpt_1\n{expires}".encode()
    assert signature.encode() == Signer("new", salt=SALT).get_signature(message)
    signer.verify("acme", "ckpt_1", expires, signature)
    old_signature = Signer("old", salt=SALT).get_signature(message).decode()
    signer.verify("acme", "ckpt_1", expires, old_signature)  # the previous key still opens
    with pytest.raises(SignatureInvalid):
        signer.verify("other", "ckpt_1", expires, signature)  # another tenant's URL
    with pytest.raises(SignatureInvalid):
        UrlSigner(("new2",), "http://h", 3600, lambda: now[0]).verify(
            "acme", "ckpt_1", expires, signature
        )
    now[0] += 3601
    with pytest.raises(SignatureExpired):
        signer.verify("acme", "ckpt_1", expires, signature)


def test_access_log_lines_never_carry_a_signature():
    import logging

    from ckptstore.server.logs import redact_access_log

    logger = logging.getLogger("tests.access")
    redact_access_log(logger)
    redact_access_log(logger)  # once only
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    path = "/signed/ckpt_1?expires=1700003600&signature=AbC-_9xyz"
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", path, "1.1", 200)
    assert seen == [
        '127.0.0.1:5 - "GET /signed/ckpt_1?expires=1700003600&signature=[redacted] HTTP/1.1" 200'
    ]
    assert len(logger.filters) == 1
