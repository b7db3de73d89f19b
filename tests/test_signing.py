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


@pytest.mark.parametrize("key", ["k", "a-longer-signing-key-" * 5, "clé-ünïcode"])
def test_url_signatures_equal_itsdangerous_for_any_key_checkpoint_and_file(key):
    signer = UrlSigner((key,), "http://h", 3600, lambda: 1_700_000_000.0)
    for checkpoint_id, path in [("ckpt_1", None), ("ckpt_a b%", None), ("ckpt_2", "d/é f.bin")]:
        expires, signature = signature_of(signer.sign("acme", checkpoint_id, path).url)
        message = f"acme\n{checkpoint_id}\n{expires}".encode()
        if path is not None:
            message += f"\nfile\n{path}".encode()
        assert signature.encode() == Signer(key, salt=SALT).get_signature(message)
        signer.verify("acme", checkpoint_id, expires, signature, path)


def test_padded_hmac_is_hmac_sha1_for_keys_of_any_length():
    import hashlib
    import hmac
    from base64 import urlsafe_b64encode

    from ckptstore.server.signing import _PaddedHmac

    for key in [b"", b"k", b"x" * 64, b"y" * 65, bytes(range(200))]:
        for message in [b"", b"acme\nckpt_1\n1700003600", b"m" * 1000]:
            expected = urlsafe_b64encode(hmac.digest(key, message, hashlib.sha1))
            assert _PaddedHmac(key).signature(message) == expected.rstrip(b"=").decode()
