"""The OpenAPI schema as served: FastAPI's, finished in one pass over every operation.

FastAPI derives the schema from the routes; what it cannot know is added here, once
for all routes rather than repeated in each decorator:

- ids documented where they appear in a path: their pattern, what they may be (a
  checkpoint reference, ``store/refs.py``) and examples;
- every error answer described with the one error schema (``schemas.Error``), with
  the statuses the HTTP layer itself answers (401 without a key, 403 without an
  admin key, 413 for a JSON body over the limit, the upload limits);
- no titles derived from parameter names (``"Checkpointid"``): a name says it better;
- an example on each request and answer whose model has one.
"""

from __future__ import annotations

from typing import Any

from ckptstore.server.schemas import (
    CHECKPOINT_ID_PATTERN,
    ENDPOINT_ID_PATTERN,
    EXAMPLE_ENDPOINT,
    EXAMPLE_ID,
    EXAMPLE_JOB,
    JOB_ID_PATTERN,
    REFERENCE_PATTERN,
)

ERROR_REF = {"$ref": "#/components/schemas/Error"}
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

# What each status means, wherever it is answered.
_STATUS_TEXT = {
    400: "Malformed body (JSON, zstd or block frames)",
    401: "No API key, or a wrong or revoked one",
    403: "The key is not an admin key (store-wide operations)",
    404: "No such object for this key's tenant",
    408: "The request body paused longer than CKPTSTORE_BODY_READ_TIMEOUT_S",
    409: "Conflicts with what exists (a pinned or pending checkpoint, a name taken)",
    413: "The body is over its limit",
    415: "A Content-Encoding other than identity or zstd",
    422: "A parameter or field with a value outside what it allows",
    429: "The tenant runs CKPTSTORE_UPLOADS_PER_TENANT uploads already; retry later",
    507: "The store's disk is full",
}
_PATH_IDS: dict[str, dict[str, Any]] = {
    "jobId": {
        "description": "A job id: 1-128 characters of A-Z a-z 0-9 . _ -, starting with a"
        " letter or digit.",
        "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
        "example": EXAMPLE_JOB,
    },
    "checkpointId": {
        "description": "The checkpoint: its id, a prefix of the id that only one of the"
        " caller's checkpoints starts with (8 characters or more), or the job's alias"
        " JOB:latest (newest ready checkpoint, best copies aside), JOB:best or JOB:final."
        " Answers give the full id.",
        "schema": {"type": "string", "pattern": REFERENCE_PATTERN},
        "examples": {
            "id": {"value": EXAMPLE_ID},
            "prefix": {"value": EXAMPLE_ID[:13]},
            "alias": {"value": f"{EXAMPLE_JOB}:latest"},
        },
    },
    "endpointId": {
        "description": "An endpoint id (ep_ and 16 hex digits).",
        "schema": {"type": "string", "pattern": ENDPOINT_ID_PATTERN},
        "example": EXAMPLE_ENDPOINT,
    },
}
# A signed URL names the checkpoint by its id only: it is never resolved.
_SIGNED_ID: dict[str, Any] = {
    "description": "The checkpoint's full id, as the downloadUrl names it.",
    "schema": {"type": "string", "pattern": CHECKPOINT_ID_PATTERN},
    "example": EXAMPLE_ID,
}


def finish(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's) completed as the module docstring says; returns it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in components.values():
        for prop in model.get("properties", {}).values():
            prop.pop("title", None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _document_parameters(path, operation)
            _document_errors(path, method, operation)
            _add_examples(operation, components)
    for name in _VALIDATION_SCHEMAS:
        components.pop(name, None)
    return schema


def _document_parameters(path: str, operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        parameter.get("schema", {}).pop("title", None)
        if parameter.get("in") != "path":
            continue
        name = parameter["name"]
        doc = _SIGNED_ID if path.startswith("/signed/") else _PATH_IDS.get(name)
        if doc is not None:
            parameter.update({k: v for k, v in doc.items() if k != "schema"})
            parameter["schema"] = dict(doc["schema"])


def _document_errors(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    if operation.get("security"):
        statuses.add(401)
    if path in ("/metrics", "/v2/gc"):
        statuses.add(403)
    body = operation.get("requestBody", {}).get("content", {})
    if "application/json" in body:
        statuses |= {400, 413, 422}
    if "uploads" in operation.get("tags", ()) and method in ("put", "post"):
        statuses |= {408, 429, 507}
        if "application/json" not in body:
            statuses.add(415)  # a raw body: Content-Encoding identity or zstd
    for status in sorted(statuses):
        answer = responses.setdefault(str(status), {})
        answer["description"] = _STATUS_TEXT.get(status, answer.get("description", "Error"))
        answer["content"] = {"application/json": {"schema": ERROR_REF}}
    responses["5XX"] = {
        "description": "A server error: internal_error (500), storage_unavailable (503,"
        " object storage did not answer; Retry-After), insufficient_storage (507)",
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def _add_examples(operation: dict[str, Any], components: dict[str, Any]) -> None:
    """The first example of each body's model, as the body's example."""
    bodies = [operation.get("requestBody", {})] + list(operation.get("responses", {}).values())
    for body in bodies:
        for media in body.get("content", {}).values():
            ref = media.get("schema", {}).get("$ref", "")
            examples = components.get(ref.rpartition("/")[2], {}).get("examples")
            if examples and "example" not in media:
                media["example"] = examples[0]
