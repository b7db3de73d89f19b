"""The served OpenAPI schema documents ids, bodies, errors and examples; OPTIONS answers."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from ckptstore.server import schemas
from ckptstore.store.ids import new_checkpoint_id, new_endpoint_id
from tests.server_helpers import make_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("openapi"))
    with server.client:
        yield server


@pytest.fixture(scope="module")
def schema(srv):
    return srv.client.get("/openapi.json").json()


def operations(schema):
    for path, ops in schema["paths"].items():
        for method, operation in ops.items():
            yield path, method, operation


def test_every_error_answer_is_documented_with_the_error_schema(schema):
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        assert "5XX" in responses, (path, method)
        for status, answer in responses.items():
            if status == "5XX" or int(status) >= 400:
                content = answer["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (
                    path,
                    method,
                    status,
                )
        if operation.get("security"):
            assert "401" in responses, (path, method)
    error = schema["components"]["schemas"]["ErrorBody"]["properties"]
    assert set(error) == {"code", "message", "type", "fields"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    blocks = schema["paths"]["/v2/training/checkpoints/{checkpointId}/blocks"]["put"]
    assert {"409", "413", "415", "429"} <= set(blocks["responses"])
    assert "403" in schema["paths"]["/v2/gc"]["post"]["responses"]


def test_no_title_is_derived_from_a_name(schema):
    for model in schema["components"]["schemas"].values():
        for name, prop in model.get("properties", {}).items():
            assert "title" not in prop, name
    for path, method, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            assert "title" not in parameter["schema"], (path, method, parameter["name"])


def _path_parameter(schema, path, method, name):
    (found,) = [p for p in schema["paths"][path][method]["parameters"] if p["name"] == name]
    return found


def test_ids_carry_their_patterns_and_examples(schema):
    reference = _path_parameter(
        schema, "/v2/training/checkpoints/{checkpointId}", "get", "checkpointId"
    )
    pattern = re.compile(reference["schema"]["pattern"])
    for example in reference["examples"].values():
        assert pattern.fullmatch(example["value"])
    assert pattern.fullmatch(new_checkpoint_id()) and pattern.fullmatch("job_1:best")
    assert not pattern.fullmatch("job_1:newest") and not pattern.fullmatch("a/b")
    signed = _path_parameter(schema, "/signed/{checkpointId}", "get", "checkpointId")
    assert not re.fullmatch(signed["schema"]["pattern"], "job_1:latest")
    job = _path_parameter(schema, "/v2/training/jobs/{jobId}/checkpoints", "get", "jobId")
    assert re.fullmatch(job["schema"]["pattern"], job["example"])
    assert not re.fullmatch(job["schema"]["pattern"], "-bad")
    endpoint = _path_parameter(schema, "/v2/endpoints/{endpointId}", "get", "endpointId")
    assert re.fullmatch(endpoint["schema"]["pattern"], new_endpoint_id())
    checkpoint = schema["components"]["schemas"]["Checkpoint"]["properties"]["checkpointId"]
    assert re.fullmatch(checkpoint["pattern"], new_checkpoint_id())


def test_raw_upload_bodies_are_documented(schema):
    data = schema["paths"]["/v2/training/checkpoints/{checkpointId}/data"]["put"]["requestBody"]
    assert data["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    assert "zstd" in data["description"]
    blocks = schema["paths"]["/v2/training/checkpoints/{checkpointId}/blocks"]["put"]
    content = blocks["requestBody"]["content"]
    assert set(content) == {
        "application/octet-stream",
        "application/x-ckptstore-blocks; version=2",
        "application/x-ckptstore-blocks; version=3",
    }
    described = blocks["requestBody"]["description"]
    assert "little-endian" in described and "base block id" in described


def test_bodies_and_answers_have_examples_their_models_accept(schema):
    components = schema["components"]["schemas"]
    for path, method, operation in operations(schema):
        bodies = [operation.get("requestBody", {})] + [
            answer for status, answer in operation["responses"].items() if status.startswith("2")
        ]
        for body in bodies:
            for media in body.get("content", {}).values():
                ref = media.get("schema", {}).get("$ref")
                if ref:
                    assert "example" in media, (path, method, ref)
    checked = 0
    for name, model in vars(schemas).items():
        if isinstance(model, type) and issubclass(model, BaseModel) and model is not BaseModel:
            for example in components.get(name, {}).get("examples", []):
                model.model_validate(example)
                checked += 1
    assert checked >= 12


def test_options_answers_with_the_methods_of_the_path(srv):
    answer = srv.client.options("/v2/training/checkpoints/ckpt_0123")
    assert answer.status_code == 204
    assert answer.headers["allow"] == "DELETE, GET, OPTIONS"
    assert srv.client.options("/v2/endpoints").headers["allow"] == "GET, OPTIONS, POST"
    assert srv.client.options("/no/such/path").status_code == 404


def test_a_405_names_every_method_of_the_path(srv):
    refused = srv.client.put("/v2/training/checkpoints/ckpt_0123", headers=srv.acme)
    assert refused.status_code == 405
    assert refused.headers["allow"] == "DELETE, GET, OPTIONS"
    assert refused.json()["error"]["code"] == "method_not_allowed"
