"""Response cache for deterministic OpenAI requests: key rules and the stored entry format.

A request is cacheable when its answer is a function of the request: ``temperature == 0`` (greedy)
or an explicit ``seed``. The key is the canonical JSON of the request (route, model, prompt or
messages, every sampling parameter), minus fields that do not change the answer. Streaming and
non-streaming requests are separate entries: a streamed entry is the SSE bytes as vLLM sent them,
so a hit replays the same events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from services import metrics
from services.cache.keys import KEY_FORMAT_VERSION, canonical_json, digest
from services.cache.store import ByteStore

CACHE_NAME = "llm_response"
# Fields that never change the generated answer.
_IGNORED_FIELDS = frozenset({"user", "request_id"})
_JSON, _SSE = b"J", b"S"


def is_deterministic(payload: dict[str, Any]) -> bool:
    """Greedy decoding or a fixed seed. A missing temperature is not greedy: vLLM then takes the
    model's generation_config default, which usually samples."""
    temperature = payload.get("temperature")
    return temperature == 0 or payload.get("seed") is not None


def response_key(route: str, payload: dict[str, Any]) -> str | None:
    """The cache key of a request, or None when the request must not be cached."""
    if not is_deterministic(payload):
        return None
    kept = {k: v for k, v in payload.items() if k not in _IGNORED_FIELDS}
    return f"llm:{KEY_FORMAT_VERSION}:{route}:{digest(canonical_json(kept))}"


def sse_events(body: bytes) -> Iterator[bytes]:
    """Split a recorded SSE body back into its events (each ends with a blank line)."""
    for event in body.split(b"\n\n"):
        if event.strip():
            yield event + b"\n\n"


def _entry(blob: bytes | None) -> tuple[bool, bytes] | None:
    if blob is None or blob[:1] not in (_JSON, _SSE) or len(blob) < 2:
        return None
    return blob[:1] == _SSE, blob[1:]


class ResponseCache:
    def __init__(self, store: ByteStore) -> None:
        self.store = store

    def get(self, key: str) -> tuple[bool, bytes] | None:
        """(is_stream, body) of a cached answer, or None. A damaged entry is a miss."""
        started = time.perf_counter()
        [blob] = self.store.mget([key])
        metrics.CACHE_LOOKUP_SECONDS.labels(CACHE_NAME).observe(time.perf_counter() - started)
        if (entry := _entry(blob)) is None:
            metrics.CACHE_LOOKUPS.labels(CACHE_NAME, "miss" if blob is None else "corrupt").inc()
            return None
        metrics.CACHE_LOOKUPS.labels(CACHE_NAME, "hit").inc()
        return entry

    def peek(self, key: str) -> tuple[bool, bytes] | None:
        """As ``get``, uncounted: a request waiting for another process's answer looks many times."""
        [blob] = self.store.mget([key])
        return _entry(blob)

    def put(self, key: str, body: bytes, *, stream: bool) -> None:
        self.store.mset([(key, (_SSE if stream else _JSON) + body)])

    def close(self) -> None:
        """Commit what a write-behind store still holds (services/cache/write_behind.py)."""
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    @staticmethod
    def bypass() -> None:
        metrics.CACHE_LOOKUPS.labels(CACHE_NAME, "bypass").inc()
