"""The cache-aware path to vLLM's own OpenAI server, which runs in its own process.

Only the two generation routes pass through here, to consult the response cache; every other route is
relayed untouched (services/llm/routes.py). Whoever talks to the engine directly runs this: the gateway
when the engine is on its host, else the LLM service. Bytes go through services/relay.py as they arrive;
a miss is recorded while it streams and stored by the cache's writer thread once it is complete;
identical requests that arrive meanwhile, in this process or another, share that one generation
(services/llm/coalesce.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from services import metrics
from services.llm.coalesce import Coalescer
from services.llm.response_cache import ResponseCache, response_key
from services.llm.routing import EnginePool
from services.llm.semantic import PromptEmbedder, SemanticIndex, prompt_text, signature
from services.relay import (
    Upstream,
    UpstreamUnavailable,
    is_event_stream,
    relay_chunks,
    request_headers,
    respond,
    response_headers,
)
from services.wire import (
    CACHE_HEADER,
    REPLICA_HEADER,
    invalid_json,
    openai_error,
    unservable_field,
)

log = logging.getLogger(__name__)

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]  # raw, content type included
    chunks: AsyncIterator[bytes]
    cache: str  # "hit", "semantic-hit", "coalesced" (followed an identical request), "miss" or "bypass"
    body: bytes | None = None  # the whole answer, where it is known before the first byte (a cache hit)
    content_type: str = field(init=False)

    def __post_init__(self) -> None:
        self.content_type = dict(self.headers).get(b"content-type", b"application/json").decode("latin-1")


class EngineUnavailable(RuntimeError):
    pass


class EngineRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Pending:
    """What to store once vLLM's answer is complete: the exact key, and where the semantic index
    should remember the prompt (when the semantic cache is on)."""

    key: str
    semantic: tuple[str, np.ndarray] | None = None


class EngineProxy:
    def __init__(
        self,
        engines: EnginePool,
        cache_factory: Callable[[], ResponseCache] | None,
        semantic: SemanticIndex | None = None,
        embed_prompt: PromptEmbedder | None = None,
        hop: str = "llm",
        coalesce_across_processes: bool = False,
    ) -> None:
        self.engines = engines
        self.hop = hop  # which service this proxy runs in: the label of its overhead histogram
        self._cache_factory = cache_factory
        self._cache: ResponseCache | None = None
        self.semantic = semantic if embed_prompt is not None else None
        self._embed_prompt = embed_prompt
        self._coalesce_across_processes = coalesce_across_processes
        self._coalescer: Coalescer | None = None  # identical requests in flight: one generation

    @property
    def engine(self) -> Upstream:
        """The engine that answers everything but generations (the first replica)."""
        return self.engines.primary

    @property
    def cache(self) -> ResponseCache | None:
        # Opened on first use, inside the worker process (never in BentoML's parent process).
        if self._cache is None and self._cache_factory is not None:
            self._cache = self._cache_factory()
            self._coalescer = Coalescer(self._cache, self._coalesce_across_processes)
        return self._cache

    async def close(self) -> None:
        """Commit the cache writes still queued, then close the engine connections."""
        if self._cache is not None:
            self._cache.close()
        await self.engines.close()

    async def open(
        self, route: str, body: bytes, headers: list[tuple[str, str]], arrived: float | None = None
    ) -> Reply:
        """Answer from the cache, or start the request in vLLM and relay its reply. ``arrived`` (a
        ``perf_counter`` time) is when the request reached this layer, for the overhead histogram."""
        arrived = time.perf_counter() if arrived is None else arrived
        payload = _json_object(body, headers)
        pending = None
        cache = self.cache
        if cache is not None:
            key = response_key(route, payload) if payload is not None else None
            if key is None:
                cache.bypass()
            elif (cached := cache.get(key)) is not None:
                return _cached_reply(*cached, "hit")
            else:
                pending = _Pending(key)
                if self.semantic is not None and payload is not None:
                    pending.semantic, cached = await self._semantic_lookup(route, payload, cache)
                    if cached is not None:
                        return _cached_reply(*cached, "semantic-hit")
        shared = None
        if pending is not None:
            assert self._coalescer is not None  # opened with the cache
            turn = await self._coalescer.enter(pending.key)
            if turn.answer is not None:
                return _cached_reply(*turn.answer, "coalesced")
            assert turn.generation is not None
            if turn.kind == "follow":
                return Reply(200, turn.generation.headers, turn.generation.follow(), "coalesced")
            shared = turn.generation
        sent = time.perf_counter()
        replica = self.engines.choose(payload)
        try:
            upstream = await replica.upstream.request("POST", route, body, headers)
        except BaseException as exc:  # the engine is down, or the client left (cancelled) meanwhile
            self.engines.release(replica)
            if shared is not None:
                shared.abandon()  # else its followers (and its claim's renewal) would wait for ever
            if isinstance(exc, UpstreamUnavailable):
                raise EngineUnavailable(str(exc)) from exc
            raise
        reply_headers = response_headers(upstream.headers)
        if len(self.engines.replicas) > 1:
            reply_headers.append((REPLICA_HEADER.encode(), str(replica.index).encode()))
        content_type = upstream.headers.get("content-type")
        recorded: list[bytes] | None = [] if pending is not None and upstream.status == 200 else None
        chunks = self._first_byte_timed(relay_chunks(upstream, recorded), sent - arrived)
        chunks = self.engines.released_after(replica, chunks)
        if recorded is None or pending is None:
            if shared is not None:
                shared.abandon()
            return Reply(upstream.status, reply_headers, chunks, "miss" if pending else "bypass")
        chunks = self._stored_once_complete(chunks, recorded, pending, stream=is_event_stream(content_type))
        assert shared is not None
        shared.start(reply_headers, chunks)
        return Reply(upstream.status, reply_headers, shared.follow(), "miss")

    async def _semantic_lookup(
        self, route: str, payload: dict[str, Any], cache: ResponseCache
    ) -> tuple[tuple[str, np.ndarray] | None, tuple[bool, bytes] | None]:
        """(where to remember this prompt, a near-duplicate's cached answer). Embedding failures
        only switch the semantic cache off for this request."""
        assert self.semantic is not None and self._embed_prompt is not None
        text = prompt_text(payload)
        if text is None:
            return None, None
        try:
            vector = await self._embed_prompt(text)
        except Exception as exc:
            log.warning("semantic cache: embedding failed (%s); exact cache only", exc)
            metrics.CACHE_LOOKUPS.labels("llm_semantic", "error").inc()
            return None, None
        sig = signature(route, payload)
        found = self.semantic.find(sig, vector)
        cached = cache.get(found[0]) if found is not None else None
        metrics.CACHE_LOOKUPS.labels("llm_semantic", "miss" if cached is None else "hit").inc()
        return (sig, vector), cached

    async def _first_byte_timed(
        self, chunks: AsyncIterator[bytes], before_engine_s: float
    ) -> AsyncIterator[bytes]:
        """Observe this layer's share of the time to first byte: ``before_engine_s`` plus the time from
        vLLM's first chunk to its hand-over to the server (when the consumer asks for the next one)."""
        timed = False
        async for chunk in chunks:
            received = time.perf_counter()
            yield chunk
            if not timed:
                timed = True
                overhead = before_engine_s + time.perf_counter() - received
                metrics.PROXY_OVERHEAD_SECONDS.labels(self.hop).observe(overhead)

    async def _stored_once_complete(
        self, chunks: AsyncIterator[bytes], recorded: list[bytes], pending: _Pending, *, stream: bool
    ) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
        body = b"".join(recorded)
        if stream and not body.rstrip().endswith(b"data: [DONE]"):
            return  # only complete answers are cached
        assert self.cache is not None
        self.cache.put(pending.key, body, stream=stream)  # queued: the writer thread commits it
        if self.semantic is not None and pending.semantic is not None:
            self.semantic.add(*pending.semantic, pending.key)

    async def respond(self, route: str, request: Request) -> Response:
        arrived = time.perf_counter()
        try:
            reply = await self.open(
                route, await request.body(), request_headers(request.headers.items()), arrived
            )
        except EngineUnavailable as exc:
            return openai_error(str(exc), 503)
        except InvalidJSON as exc:
            return invalid_json(exc)
        except InvalidField as exc:
            return exc.response
        headers = [*reply.headers, (CACHE_HEADER.encode(), reply.cache.encode())]
        if reply.body is not None:  # no stream to relay: no task group, no disconnect watcher, one send
            response = Response(reply.body, reply.status)
            response.raw_headers.extend(headers)
            return response
        return await respond(reply.status, headers, reply.content_type, reply.chunks, self.engine.name)

    async def completion_text(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> AsyncIterator[str]:
        """Text deltas of a streamed /v1/completions request (for the typed BentoML API)."""
        body = json.dumps({**payload, "stream": True}).encode()
        sent = [("content-type", "application/json"), *(headers or {}).items()]
        reply = await self.open("/v1/completions", body, sent)
        if reply.status != 200:
            raw = b"".join([chunk async for chunk in reply.chunks])
            raise EngineRequestError(reply.status, _error_message(raw))
        async for text in sse_text(reply.chunks):
            yield text


async def sse_text(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The ``choices[].text`` of each event of a /v1/completions event stream, in order."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            data = event.removeprefix(b"data: ").strip()
            if data and data != b"[DONE]":
                for choice in json.loads(data).get("choices", []):
                    if choice.get("text"):
                        yield choice["text"]


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _cached_reply(is_stream: bool, stored: bytes, how: str) -> Reply:
    """A streamed hit is the recorded events in one plain response: the client parses the same events,
    and the worker pays one send instead of one per token (on the H200 Zipf workload, 64 clients, the
    Bento workers' CPU fell from 2.0 to 1.5 s: benchmarks/results/llm_zipf_gpu_h200*.json), without
    the task group a streamed response needs."""
    return Reply(200, list(_SSE_HEADERS if is_stream else _JSON_HEADERS), _once(stored), how, body=stored)


class InvalidJSON(ValueError):
    """A body declared JSON that does not parse: answered here with OpenAI's 400 (services/wire.py)."""


class InvalidField(ValueError):
    """A field vLLM would crash on (``wire.unservable_field``): answered here with the 400 that names it."""

    def __init__(self, response: Response) -> None:
        super().__init__("a field vLLM cannot take")
        self.response = response


def _json_object(body: bytes, headers: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The request's JSON object (the cache key's input), or None for anything else vLLM should judge."""
    try:
        value = json.loads(body)
    except ValueError as exc:
        if any(k.lower() == "content-type" and "json" in v for k, v in headers):
            raise InvalidJSON(str(exc)) from exc
        return None
    if (refusal := unservable_field(value)) is not None:
        raise InvalidField(refusal)
    return value if isinstance(value, dict) else None


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")
