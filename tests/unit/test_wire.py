"""services/wire.py: the fields refused before vLLM sees them, because vLLM would crash on them."""

from __future__ import annotations

import json

from services.wire import unservable_field


def _param(payload: object) -> str | None:
    refusal = unservable_field(payload)
    if refusal is None:
        return None
    assert refusal.status_code == 400
    return json.loads(refusal.body)["error"]["param"]


def test_integers_past_64_bits_and_non_object_structured_outputs_are_named() -> None:
    assert _param({"top_k": 2**64}) == "top_k"
    assert _param({"seed": 2**63}) == "seed"
    assert _param({"seed": -(2**63) - 1}) == "seed"
    assert _param({"structured_outputs": True, "top_k": 2**64}) == "structured_outputs"  # the first


def test_what_vllm_refuses_or_serves_itself_passes() -> None:
    assert _param({"top_k": 2**63 - 1, "seed": -(2**63), "stream": True, "n": 1}) is None  # bool is no int
    assert _param({"structured_outputs": {"json": {}}, "max_tokens": 16}) is None
    assert _param(["not", "an", "object"]) is None
