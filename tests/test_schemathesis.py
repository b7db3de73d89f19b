"""Requests generated from the OpenAPI schema (schemathesis) never get a server error.

Every operation of the schema is called in process (ASGI) with an admin key, with
cases schemathesis draws from the schema, valid ones and invalid ones. No answer
may be a 5xx, and every error answer is JSON with ``error.code`` and
``error.message``. Hypothesis runs derandomized, with a fixed budget per
operation and mode and no example database, so every run sends the same
requests.

The operations run as subtests of one test rather than through
``schemathesis.pytest.from_fixture``, whose lazy loading does not run on pytest 9
(it renames the test node through an attribute pytest no longer has).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.server_helpers import make_server

EXAMPLES = 50  # per operation and generation mode


def errors_are_json_with_a_code(ctx: Any, response: schemathesis.Response, case: Any) -> None:
    """An error answer is ``{"error": {"code", "message", ...}}``."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), response.text
    assert isinstance(error.get("code"), str) and error["code"], response.text
    assert isinstance(error.get("message"), str), response.text


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str]):
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers=headers, checks=[not_a_server_error, errors_are_json_with_a_code]
        )

    run()


def test_no_generated_request_gets_a_server_error(
    tmp_path: Path, subtests: pytest.Subtests
) -> None:
    # Not entered as a context: schemathesis runs the app's lifespan itself, once per
    # app until the process exits; a second lifespan would start a second GC worker.
    server = make_server(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", server.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = server.client.app.openapi()["paths"]
    assert len(operations) == sum(len(methods) for methods in documented.values())
    negated = 0
    for operation in operations:
        for mode in _modes(operation):
            negated += mode == GenerationMode.NEGATIVE
            with subtests.test(msg=f"{operation.label} {mode.value}"):
                _fuzz(operation, mode, server.acme)
    assert negated >= 6  # bodies and query strings of the schema are also sent invalid


def _modes(operation: schemathesis.APIOperation) -> list[GenerationMode]:
    """Valid cases for every operation; invalid ones where the schema constrains
    something: a body or query parameters. (A plain string path parameter has no
    invalid value, and schemathesis cannot draw one.)"""
    if len(operation.body) or len(operation.query):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]
