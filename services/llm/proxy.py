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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.llm.response_cache import ResponseCache, response_key, sse_events

log = logging.getLogger(__name__)

CACHE_HEADER = "x-infstack-cache"
_FORWARDED_HEADERS = ("content-type", "authorization", "accept", "x-request-id")


def openai_error(message: str, status: int, kind: str = "ServiceUnavailableError") -> JSONResponse:
    """An error body in the shape vLLM's server uses, so clients parse ours and its alike."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}}, status)


@dataclass
class Reply:
    status: int
    content_type: str
    chunks: AsyncIterator[bytes]
    cache: str  # "hit", "miss" or "bypass"

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


class EngineProxy:
    def __init__(self, engine_url: str, cache_factory: Callable[[], ResponseCache] | None) -> None:
        self.engine_url = engine_url
        self._cache_factory = cache_factory
        self._cache: ResponseCache | None = None
        self._session: aiohttp.ClientSession | None = None

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
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(self, route: str, body: bytes, headers: dict[str, str]) -> Reply:
        """Answer from the cache, or start the request in vLLM and relay its reply."""
        key = None
        cache = self.cache
        if cache is not None:
            payload = _json_object(body)
            key = response_key(route, payload) if payload is not None else None
            if key is None:
                cache.bypass()
            elif (cached := cache.get(key)) is not None:
                is_stream, stored = cached
                if is_stream:
                    return Reply(200, "text/event-stream; charset=utf-8", _replay_events(stored), "hit")
                return Reply(200, "application/json", _once(stored), "hit")
        try:
            upstream = await self.session.post(self.engine_url + route, data=body, headers=headers)
        except aiohttp.ClientError as exc:
            raise EngineUnavailable(f"the vLLM engine is not answering ({exc})") from exc
        content_type = upstream.headers.get("content-type", "application/json")
        cacheable = key if upstream.status == 200 else None
        if content_type.startswith("text/event-stream"):
            chunks = self._relay_stream(upstream, cacheable)
        else:
            chunks = self._relay_body(upstream, cacheable)
        return Reply(upstream.status, content_type, chunks, "miss" if key else "bypass")

    async def _relay_body(self, upstream: aiohttp.ClientResponse, key: str | None) -> AsyncIterator[bytes]:
        try:
            body = await upstream.read()
        finally:
            upstream.release()
        if key is not None and self.cache is not None:
            self.cache.put(key, body, stream=False)
        yield body

    async def _relay_stream(self, upstream: aiohttp.ClientResponse, key: str | None) -> AsyncIterator[bytes]:
        recorded: list[bytes] | None = [] if key is not None else None
        finished = False
        try:
            async for chunk in upstream.content.iter_any():
                if recorded is not None:
                    recorded.append(chunk)
                yield chunk
            finished = True
        finally:
            if finished:
                upstream.release()
            else:
                # The client went away: dropping the connection makes vLLM abort the request.
                upstream.close()
        if recorded is not None and self.cache is not None:
            body = b"".join(recorded)
            if body.rstrip().endswith(b"data: [DONE]"):  # only complete answers are cached
                self.cache.put(key, body, stream=True)  # type: ignore[arg-type]

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
