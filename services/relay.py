"""HTTP relaying between the Bento's hops: one implementation used by every hop.

- ``Upstream``: one aiohttp session per server we relay to (the vLLM engine, a dependency service), over
  TCP or a Unix socket, with **no connection cap**. aiohttp's default of 100 connections per session,
  which BentoML's dependency client keeps, held the gateway to 100 streams in flight against an engine
  scheduling 256 (0.86x raw vLLM throughput on an H200: docs/ARCHITECTURE.md).
- Headers: end-to-end headers pass both ways unchanged; hop-by-hop ones (RFC 9110 7.6.1) never do.
- Bodies: an event stream is relayed chunk by chunk as it arrives, never buffered, re-chunked or timed
  (a stream-batching timer costs a wrapper tens of ms of TTFT); any other body is read whole and sent
  with its length. A client that goes away closes the upstream connection, so vLLM aborts the request
  instead of generating into the void.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.wire import openai_error

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
        "trailer", "transfer-encoding", "upgrade",
        "host", "content-length",  # set again by whoever sends the next hop
    }
)  # fmt: skip
# Set by the server that answers the client (uvicorn, BentoML), not copied from upstream.
_SERVER_OWNED = frozenset({"date", "server"})
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)
Headers = Mapping[str, str] | Sequence[tuple[str, str]]
EVENT_STREAM = "text/event-stream"


class UpstreamUnavailable(Exception):
    """The upstream did not answer at all (refused, reset, closed mid-request)."""

    def __init__(self, name: str, cause: Exception) -> None:
        super().__init__(f"the {name} is not answering ({type(cause).__name__}: {cause})")
        self.name = name


class Upstream:
    """A server we relay to. ``url`` is ``http://host:port`` or ``file:///path`` (a Unix socket, as
    BentoML's runner map spells it). The session is made on first use, in the worker's event loop."""

    def __init__(self, name: str, url: str, keepalive_timeout_s: float = 3.0) -> None:
        self.name = name
        self.url = url
        parsed = urlsplit(url)
        self._unix_path = parsed.path if parsed.scheme in ("file", "unix") else None
        self.base_url = "http://localhost" if self._unix_path else url.rstrip("/")
        # Idle connections close on our side first: vLLM's server drops them after 5 s
        # (VLLM_HTTP_TIMEOUT_KEEP_ALIVE), and reusing one it has just closed fails the request.
        self._keepalive_timeout_s = keepalive_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self._unix_path is not None:
                connector = aiohttp.UnixConnector(
                    path=self._unix_path, limit=0, keepalive_timeout=self._keepalive_timeout_s
                )
            else:
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=self._keepalive_timeout_s)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=_NO_TIMEOUT, auto_decompress=False
            )
        return self._session

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: Headers | None = None
    ) -> aiohttp.ClientResponse:
        """Send one request; the caller reads (or relays) and releases the response."""
        try:
            return await self.session.request(method, self.base_url + path, data=body, headers=headers)
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(self.name, exc) from exc

    async def post_json(self, path: str, payload: object) -> tuple[int, Any]:
        """POST ``payload`` as JSON: (200, the parsed answer), or (status, the answer's first 200
        characters) for any other status. Raises UpstreamUnavailable when nothing answers."""
        body = json.dumps(payload).encode()
        reply = await self.request("POST", path, body, {"content-type": "application/json"})
        async with reply:
            if reply.status != HTTPStatus.OK:
                return reply.status, (await reply.text())[:200]
            return reply.status, await reply.json()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def dependency_upstream(service_name: str) -> Upstream | None:
    """A dependency service as this worker reaches it through the relay, at the address BentoML gave it
    (a Unix socket under ``bentoml serve``, ``http://`` with ``--depends``); None where BentoML built the
    service inside this process (its client is then the only way to it)."""
    from services.bentoml_adapter import dependency_url

    url = dependency_url(service_name)
    return Upstream(f"{service_name} service", url) if url is not None else None


def request_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's end-to-end headers, to send on (repeated headers kept)."""
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]


def response_headers(headers: CIMultiDictProxy[str]) -> list[tuple[bytes, bytes]]:
    """An upstream answer's end-to-end headers, as ASGI raw headers (repeated headers kept)."""
    skip = HOP_BY_HOP | _SERVER_OWNED
    return [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in headers.items()
        if k.lower() not in skip
    ]


async def relay_chunks(
    upstream: aiohttp.ClientResponse, record: list[bytes] | None = None
) -> AsyncIterator[bytes]:
    """The body as it arrives; ``record`` collects it too (for the response cache)."""
    finished = False
    try:
        async for chunk in upstream.content.iter_any():
            if record is not None:
                record.append(chunk)
            yield chunk
        finished = True
    finally:
        if finished:
            upstream.release()
        else:  # the client went away: drop the connection so the upstream stops working for nobody
            upstream.close()


def is_event_stream(content_type: str | None) -> bool:
    return bool(content_type) and content_type.startswith(EVENT_STREAM)  # type: ignore[union-attr]


async def respond(
    status: int,
    headers: list[tuple[bytes, bytes]],
    content_type: str | None,
    chunks: AsyncIterator[bytes],
    upstream: str = "upstream",
) -> Response:
    """The client's response: streamed when it is an event stream, else read whole and sent with its
    length. ``headers`` are raw ASGI headers and include the content type. An upstream that breaks off
    (an engine killed mid-answer) ends a stream with an error event, or makes a whole body a 503: the
    client learns what happened instead of reading a truncated answer."""
    response: Response
    if is_event_stream(content_type):
        response = StreamingResponse(_ended_by_an_error_event(chunks, upstream), status)
    else:
        try:
            response = Response(b"".join([chunk async for chunk in chunks]), status)
        except aiohttp.ClientError as exc:
            return openai_error(_broke_off(upstream, exc), 503)
    response.raw_headers.extend(headers)
    return response


def _broke_off(upstream: str, exc: Exception) -> str:
    return f"the {upstream} broke off its answer ({type(exc).__name__}); retry"


async def _ended_by_an_error_event(chunks: AsyncIterator[bytes], upstream: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield chunk
    except aiohttp.ClientError as exc:
        log.warning("%s", _broke_off(upstream, exc))
        error = {
            "error": {"message": _broke_off(upstream, exc), "type": "ServiceUnavailableError", "code": 503}
        }
        yield b"data: " + json.dumps(error).encode() + b"\n\n"


async def relay(
    upstream: Upstream,
    method: str,
    path: str,
    body: bytes,
    headers: list[tuple[str, str]],
    unavailable: Callable[[UpstreamUnavailable], Response],
) -> Response:
    """Send one request to ``upstream`` and answer with its response, as is."""
    try:
        answer = await upstream.request(method, path, body, headers)
    except UpstreamUnavailable as exc:
        return unavailable(exc)
    headers_back = response_headers(answer.headers)
    content_type = answer.headers.get("content-type")
    return await respond(answer.status, headers_back, content_type, relay_chunks(answer), upstream.name)


async def forward(
    upstream: Upstream, request: Request, path: str, unavailable: Callable[[UpstreamUnavailable], Response]
) -> Response:
    """Relay a client's ``request`` to ``path`` of ``upstream`` (query string kept), and its answer back."""
    query = request.url.query
    target = f"{path}?{query}" if query else path
    return await relay(
        upstream,
        request.method,
        target,
        await request.body(),
        request_headers(request.headers.items()),
        unavailable,
    )
