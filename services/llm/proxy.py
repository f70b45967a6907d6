"""The cache-aware path from a client to vLLM's own OpenAI server, which runs in its own process.

Only the two generation routes pass through here (to consult the response cache); every other
route (``/v1/models``, ``/health``, ``/tokenize``...) goes through BentoML's ``__command__`` proxy
untouched. Bytes are relayed as they arrive, never buffered or re-chunked: a stream-batching timer
in a wrapper is what costs Ray Serve LLM ~50 ms of TTFT (NOTES.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services import metrics
from services.http_relay import relay_chunks
from services.llm.response_cache import ResponseCache, response_key, sse_events
from services.llm.semantic import PromptEmbedder, SemanticIndex, prompt_text, signature

log = logging.getLogger(__name__)

CACHE_HEADER = "x-infstack-cache"
ENGINE_KEEPALIVE_S = 3.0
_FORWARDED_HEADERS = ("content-type", "authorization", "accept", "x-request-id")


def openai_error(message: str, status: int, kind: str = "ServiceUnavailableError") -> JSONResponse:
    """An error body in the shape vLLM's server uses, so clients parse ours and its alike."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}}, status)


@dataclass
class Reply:
    status: int
    content_type: str
    chunks: AsyncIterator[bytes]
    cache: str  # "hit", "semantic-hit", "miss" or "bypass"

    @property
    def is_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _replay_events(body: bytes) -> AsyncIterator[bytes]:
    for event in sse_events(body):
        yield event


class EngineUnavailable(RuntimeError):
    pass


@dataclass
class _Pending:
    """What to store once vLLM's answer is complete: the exact key, and where the semantic index
    should remember the prompt (when the semantic cache is on)."""

    key: str
    semantic: tuple[str, np.ndarray] | None = None


class EngineProxy:
    def __init__(
        self,
        engine_url: str,
        cache_factory: Callable[[], ResponseCache] | None,
        semantic: SemanticIndex | None = None,
        embed_prompt: PromptEmbedder | None = None,
    ) -> None:
        self.engine_url = engine_url
        self._cache_factory = cache_factory
        self._cache: ResponseCache | None = None
        self._session: aiohttp.ClientSession | None = None
        self.semantic = semantic if embed_prompt is not None else None
        self._embed_prompt = embed_prompt

    @property
    def cache(self) -> ResponseCache | None:
        # Opened on first use, inside the worker process (never in BentoML's parent process).
        if self._cache is None and self._cache_factory is not None:
            self._cache = self._cache_factory()
        return self._cache

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                # Idle connections must close on our side first: vLLM's server drops them after
                # 5 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE), and reusing one it just closed fails the request.
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=ENGINE_KEEPALIVE_S),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(self, route: str, body: bytes, headers: dict[str, str]) -> Reply:
        """Answer from the cache, or start the request in vLLM and relay its reply."""
        pending = None
        cache = self.cache
        if cache is not None:
            payload = _json_object(body)
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
        try:
            upstream = await self.session.post(self.engine_url + route, data=body, headers=headers)
        except aiohttp.ClientError as exc:
            raise EngineUnavailable(f"the vLLM engine is not answering ({exc})") from exc
        content_type = upstream.headers.get("content-type", "application/json")
        cacheable = pending if upstream.status == 200 else None
        if content_type.startswith("text/event-stream"):
            chunks = self._relay_stream(upstream, cacheable)
        else:
            chunks = self._relay_body(upstream, cacheable)
        return Reply(upstream.status, content_type, chunks, "miss" if pending else "bypass")

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

    def _store(self, pending: _Pending, body: bytes, *, stream: bool) -> None:
        if self.cache is None:
            return
        self.cache.put(pending.key, body, stream=stream)
        if self.semantic is not None and pending.semantic is not None:
            self.semantic.add(*pending.semantic, pending.key)

    async def _relay_body(
        self, upstream: aiohttp.ClientResponse, pending: _Pending | None
    ) -> AsyncIterator[bytes]:
        try:
            body = await upstream.read()
        finally:
            upstream.release()
        if pending is not None:
            self._store(pending, body, stream=False)
        yield body

    async def _relay_stream(
        self, upstream: aiohttp.ClientResponse, pending: _Pending | None
    ) -> AsyncIterator[bytes]:
        recorded: list[bytes] | None = [] if pending is not None else None
        async for chunk in relay_chunks(upstream, recorded):
            yield chunk
        if pending is not None and recorded is not None:
            body = b"".join(recorded)
            if body.rstrip().endswith(b"data: [DONE]"):  # only complete answers are cached
                self._store(pending, body, stream=True)

    async def respond(self, route: str, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED_HEADERS}
        try:
            reply = await self.open(route, await request.body(), headers)
        except EngineUnavailable as exc:
            return openai_error(str(exc), 503)
        extra = {CACHE_HEADER: reply.cache}
        if reply.is_stream:
            return StreamingResponse(reply.chunks, reply.status, extra, media_type=reply.content_type)
        body = b"".join([chunk async for chunk in reply.chunks])
        return Response(body, reply.status, extra, media_type=reply.content_type)

    async def completion_text(self, payload: dict[str, Any]) -> AsyncIterator[str]:
        """Text deltas of a streamed /v1/completions request (for the typed BentoML API)."""
        body = json.dumps({**payload, "stream": True}).encode()
        reply = await self.open("/v1/completions", body, {"content-type": "application/json"})
        if reply.status != 200:
            raw = b"".join([chunk async for chunk in reply.chunks])
            raise EngineRequestError(reply.status, _error_message(raw))
        buffer = b""
        async for chunk in reply.chunks:
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                data = event.removeprefix(b"data: ").strip()
                if data and data != b"[DONE]":
                    for choice in json.loads(data).get("choices", []):
                        if choice.get("text"):
                            yield choice["text"]


class EngineRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _cached_reply(is_stream: bool, stored: bytes, how: str) -> Reply:
    if is_stream:
        return Reply(200, "text/event-stream; charset=utf-8", _replay_events(stored), how)
    return Reply(200, "application/json", _once(stored), how)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None  # vLLM answers malformed JSON with its own 400
    return value if isinstance(value, dict) else None


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")


def create_app(get_proxy: Callable[[], EngineProxy]) -> Starlette:
    """Routes that BentoML mounts in front of its ``__command__`` proxy (matched first)."""

    async def completions(request: Request) -> Response:
        return await get_proxy().respond("/v1/completions", request)

    async def chat_completions(request: Request) -> Response:
        return await get_proxy().respond("/v1/chat/completions", request)

    return Starlette(
        routes=[
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ]
    )
