"""Marking coroutine APIs that return a stream as streaming APIs (a BentoML 1.4 workaround).

BentoML marks an API as streaming only when its function is an async generator. Our ``generate``
APIs are coroutines that open the engine request first and then return the stream, so an engine
error becomes an HTTP 4xx instead of a stream that breaks after the 200. Without the mark,
``/schema.json`` lacks ``is_stream`` and BentoML's clients read the whole stream as one string.
"""

from __future__ import annotations

from typing import Any

from _bentoml_sdk.method import DEFAULT_STREAM_MEDIA_TYPE


def mark_streaming(service: Any, api: str) -> None:
    method = service.apis[api]
    method.is_stream = True
    if not method.output_spec.media_type:
        method.output_spec.media_type = DEFAULT_STREAM_MEDIA_TYPE
