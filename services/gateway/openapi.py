"""The Bento's OpenAPI document (``/docs.json``): BentoML's typed APIs plus every route relayed to vLLM.

BentoML documents only the APIs declared with ``@bentoml.api``; the OpenAI routes are vLLM's, so their
operations come from the engine's own ``/openapi.json`` (its FastAPI document), and ``/v1/embeddings``
from this project's models. The result is OpenAPI 3.1: BentoML labels its document 3.0.2, but its schemas
come from pydantic v2, which writes JSON Schema 2020-12 (``exclusiveMinimum: 0``), the dialect of 3.1.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from services.bentoml_adapter import is_bentoml_ui_path
from services.embedding.openai_api import ROUTE as EMBEDDINGS_ROUTE
from services.embedding.openai_api import EmbeddingsRequest, EmbeddingsResponse
from services.llm.routes import ENGINE_CONTROL_PATHS

OPENAPI_VERSION = "3.1.0"
ENGINE_TAG = "vLLM (relayed)"
_REF = "#/components/schemas/"
# The Bento's own /metrics answers (with vLLM's series in it); engine controls are not public.
_NOT_RELAYED = frozenset({"/metrics"}) | ENGINE_CONTROL_PATHS
# BentoML's error bodies: ``detail`` is a string, or pydantic's list of validation errors on a 400 (its
# document declares only the string).
_BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")
_ERROR_DETAIL = {
    "title": "Error Detail",
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
}


def _renamed_refs(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _renamed_refs(v, names) for k, v in value.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF) and ref[len(_REF) :] in names:
            out["$ref"] = _REF + names[ref[len(_REF) :]]
        return out
    if isinstance(value, list):
        return [_renamed_refs(v, names) for v in value]
    return value


def _schema_of(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """Add ``model`` (and the models it uses) to ``schemas``; a reference to it."""
    schema = model.model_json_schema(ref_template=_REF + "{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": _REF + model.__name__}


def embeddings_path(schemas: dict[str, Any]) -> dict[str, Any]:
    request, response = _schema_of(EmbeddingsRequest, schemas), _schema_of(EmbeddingsResponse, schemas)
    return {
        "post": {
            "tags": ["OpenAI embeddings"],
            "summary": "Embeddings in OpenAI's format, answered from the embedding cache first",
            "operationId": "openai_embeddings",
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "200": {
                    "description": "One vector per input",
                    "content": {"application/json": {"schema": response}},
                },
                "400": {"description": "A field or a limit was exceeded (OpenAI's error shape)"},
                "404": {"description": "Not the served embedding model"},
            },
        }
    }


def merged_document(bentoml_doc: dict[str, Any], engine_doc: dict[str, Any] | None) -> dict[str, Any]:
    """BentoML's document with the engine's paths and ``/v1/embeddings`` added. Engine component
    schemas whose names BentoML already uses are renamed ``vllm_<name>`` (and so are their refs)."""
    doc = copy.deepcopy(bentoml_doc)
    doc["openapi"] = OPENAPI_VERSION
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    paths = doc.setdefault("paths", {})
    for name in _BENTOML_ERRORS:
        if "detail" in schemas.get(name, {}).get("properties", {}):
            schemas[name]["properties"]["detail"] = dict(_ERROR_DETAIL)
    if engine_doc:
        engine_schemas = engine_doc.get("components", {}).get("schemas", {})
        names = {n: (f"vllm_{n}" if n in schemas else n) for n in engine_schemas}
        for name, schema in engine_schemas.items():
            schemas[names[name]] = _renamed_refs(schema, names)
        for path, item in engine_doc.get("paths", {}).items():
            if path in paths or path in _NOT_RELAYED or is_bentoml_ui_path(path):
                continue
            item = _renamed_refs(item, names)
            for operation in item.values():
                if isinstance(operation, dict):
                    operation["tags"] = [ENGINE_TAG]
            paths[path] = item
    paths[EMBEDDINGS_ROUTE] = embeddings_path(schemas)
    doc.setdefault("tags", []).extend(
        [{"name": ENGINE_TAG, "description": "vLLM's OpenAI server, relayed with its own status codes and bodies"},
         {"name": "OpenAI embeddings", "description": "The embedding-cache service in OpenAI's format"}]
    )  # fmt: skip
    return doc
