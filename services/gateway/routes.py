"""Plain-HTTP routes of the gateway: the OpenAI API (relayed to the LLM service) and /status.

The OpenAI routes are relayed as bytes over the dependency's own connection (a Unix socket under
``bentoml serve``, TCP in a split deployment), so clients of the Bento see vLLM's API exactly and
the LLM service's response cache still applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.http_relay import relay_chunks
from services.llm.proxy import openai_error

_FORWARDED = ("content-type", "authorization", "accept", "x-request-id")
_RETURNED = ("x-infstack-cache",)
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class Dependencies(Protocol):
    """What the routes need from the gateway service instance."""

    async def llm_session(self) -> aiohttp.ClientSession: ...

    async def status(self) -> dict[str, Any]: ...


async def relay(session: aiohttp.ClientSession, request: Request, path: str) -> Response:
    headers = {k: v for k, v in request.headers.items() if k in _FORWARDED}
    try:
        upstream = await session.request(
            request.method, path, data=await request.body(), headers=headers, timeout=_NO_TIMEOUT
        )
    except aiohttp.ClientError as exc:
        return openai_error(f"the LLM service is not answering ({type(exc).__name__})", 503)
    returned = {k: v for k, v in upstream.headers.items() if k.lower() in _RETURNED}
    media_type = upstream.headers.get("content-type", "application/json")
    if media_type.startswith("text/event-stream"):
        return StreamingResponse(relay_chunks(upstream), upstream.status, returned, media_type=media_type)
    body = b"".join([chunk async for chunk in relay_chunks(upstream)])
    return Response(body, upstream.status, returned, media_type=media_type)


def create_app(get_service: Callable[[], Dependencies]) -> Starlette:
    def relayed(path: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await relay(await get_service().llm_session(), request, path)

        return handler

    async def status(_: Request) -> JSONResponse:
        view = await get_service().status()
        return JSONResponse(view, 200 if all(d["ready"] for d in view.values()) else 503)

    return Starlette(
        routes=[
            Route("/v1/models", relayed("/v1/models"), methods=["GET"]),
            Route("/v1/completions", relayed("/v1/completions"), methods=["POST"]),
            Route("/v1/chat/completions", relayed("/v1/chat/completions"), methods=["POST"]),
            Route("/status", status, methods=["GET"]),
        ]
    )


async def probe(
    name: str, check: Callable[[], Awaitable[Any]], timeout_s: float = 5.0
) -> tuple[str, dict[str, Any]]:
    """One dependency's readiness; a failure is reported, never raised."""
    try:
        detail = await asyncio.wait_for(check(), timeout_s)
        return name, {"ready": True, **(detail if isinstance(detail, dict) else {})}
    except Exception as exc:
        return name, {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
