"""/docs.json: BentoML's APIs, vLLM's relayed routes and /v1/embeddings in one OpenAPI 3.1 document."""

from __future__ import annotations

from services.gateway.openapi import ENGINE_TAG, merged_document
from tests.conftest import refs

BENTOML = {
    "openapi": "3.0.2",
    "info": {"title": "inference_stack", "version": "None"},
    "paths": {"/generate": {"post": {"operationId": "generate"}}, "/metrics": {"get": {}}},
    "components": {
        "schemas": {
            "ValidationError": {"type": "object", "title": "ours"},
            "InvalidArgument": {"properties": {"error": {"type": "string"}, "detail": {"type": "string"}}},
        }
    },
    "tags": [],
}
ENGINE = {
    "openapi": "3.1.0",
    "paths": {
        "/v1/completions": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/CompletionRequest"}}
                    }
                }
            }
        },
        "/tokenize": {
            "post": {
                "responses": {
                    "422": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ValidationError"}}
                        }
                    }
                }
            }
        },
        "/metrics": {"get": {}},
        "/docs.json": {"get": {}},
        "/scale_elastic_ep": {"post": {}},
    },
    "components": {
        "schemas": {
            "CompletionRequest": {"properties": {"x": {"$ref": "#/components/schemas/ValidationError"}}},
            "ValidationError": {"type": "object", "title": "vllm's"},
        }
    },
}


def test_engine_routes_are_added_with_colliding_schemas_renamed() -> None:
    doc = merged_document(BENTOML, ENGINE)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    assert {"/generate", "/v1/completions", "/tokenize", "/v1/embeddings"} <= set(paths)
    assert paths["/metrics"] == {"get": {}}  # the Bento's own, not the engine's
    assert "/docs.json" not in paths and "/scale_elastic_ep" not in paths  # not public
    assert paths["/v1/completions"]["post"]["tags"] == [ENGINE_TAG]
    schemas = doc["components"]["schemas"]
    assert (
        schemas["ValidationError"]["title"] == "ours" and schemas["vllm_ValidationError"]["title"] == "vllm's"
    )
    assert schemas["CompletionRequest"]["properties"]["x"]["$ref"].endswith("/vllm_ValidationError")
    # every reference in the merged document resolves
    assert {r.rsplit("/", 1)[1] for r in refs(doc)} <= set(schemas)
    assert BENTOML["openapi"] == "3.0.2"  # the input is not modified


def test_without_the_engine_document_embeddings_are_still_documented() -> None:
    doc = merged_document(BENTOML, None)
    assert set(doc["paths"]) == {"/generate", "/metrics", "/v1/embeddings"}
    assert {r.rsplit("/", 1)[1] for r in refs(doc)} <= set(doc["components"]["schemas"])


def test_bentoml_400_bodies_are_documented_as_they_are_sent() -> None:
    """BentoML answers a validation 400 with ``detail`` = pydantic's list of errors, not a string."""
    from jsonschema import Draft202012Validator

    schema = merged_document(BENTOML, None)["components"]["schemas"]["InvalidArgument"]
    validator = Draft202012Validator(schema)
    sent = {"error": "1 validation error for Input", "detail": [{"type": "missing", "loc": ["texts"]}]}
    assert validator.is_valid(sent) and validator.is_valid({"error": "x", "detail": "why"})
    assert not validator.is_valid({"error": "x", "detail": 3})
