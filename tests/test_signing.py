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


def test_log_lines_never_carry_a_signature_and_json_lines_parse():
    import json
    import logging

    from ckptstore.server.logs import JsonFormatter, TextFormatter

    record = logging.LogRecord(
        "ckptstore.access",
        logging.INFO,
        __file__,
        1,
        "GET %s 200",
        ("/signed/c?expires=1&signature=Ab-_9",),
        None,
    )
    record.__dict__.update(request_id="r1", tenant="acme", status=200, ms=1.5, bytes=10)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /signed/c?expires=1&signature=[redacted] 200"
    assert (line["level"], line["request_id"], line["tenant"], line["bytes"]) == (
        "info",
        "r1",
        "acme",
        10,
    )
    assert line["time"].endswith("Z")
    assert "Ab-_9" not in TextFormatter().format(record)
