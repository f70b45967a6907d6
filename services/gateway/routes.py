"""Plain-HTTP routes of the gateway: vLLM's whole API, OpenAI embeddings, ``/status`` and ``/docs.json``.

The LLM routes are services/llm/routes.py, the same ones the LLM service serves, over the gateway's LLM
backend (straight to the engine on this host, else through the LLM service). ``/v1/embeddings`` is
relayed as bytes to the embedding-cache service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.embedding.openai_api import ROUTE as EMBEDDINGS_ROUTE
from services.llm.backends import LLMBackend
from services.llm.routes import llm_routes
from services.relay import Upstream, UpstreamUnavailable, forward
from services.wire import openai_error


class Dependencies(Protocol):
    """What the routes need from the gateway service instance."""

    llm_backend: LLMBackend
    embedding_upstream: Upstream

    async def status(self) -> dict[str, Any]: ...

    async def openapi(self) -> dict[str, Any]: ...


def _unavailable(exc: UpstreamUnavailable) -> Response:
    return openai_error(str(exc), 503)


def create_app(get_service: Callable[[], Dependencies]) -> Starlette:
    async def status(_: Request) -> JSONResponse:
        view = await get_service().status()
        return JSONResponse(view, 200 if all(d["ready"] for d in view.values()) else 503)

    async def docs(_: Request) -> JSONResponse:
        return JSONResponse(await get_service().openapi())

    async def embeddings(request: Request) -> Response:
        return await forward(get_service().embedding_upstream, request, EMBEDDINGS_ROUTE, _unavailable)

    return Starlette(
        routes=[
            Route("/status", status, methods=["GET"]),
            Route("/docs.json", docs, methods=["GET"]),  # matched before BentoML's own (see bentoml_adapter)
            Route(EMBEDDINGS_ROUTE, embeddings, methods=["POST"]),
            *llm_routes(lambda: get_service().llm_backend),
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
