"""Plain-HTTP routes of the gateway: vLLM's whole API, OpenAI embeddings, ``/status`` and ``/docs.json``.

The LLM routes are services/llm/routes.py, the same ones the LLM service serves, over the gateway's LLM
backend (straight to the engine on this host, else through the LLM service). ``/v1/embeddings`` is
relayed as bytes to the embedding-cache service, and so are the typed routes the gateway only passes on
(``RelayToOwner``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.embedding.openai_api import ROUTE as EMBEDDINGS_ROUTE
from services.llm.backends import LLMBackend
from services.llm.routes import llm_routes
from services.relay import Upstream, UpstreamUnavailable, forward
from services.wire import dependency_failed, openai_error


class Dependencies(Protocol):
    """What the routes need from the gateway service instance."""

    llm_backend: LLMBackend
    llm_service: Upstream
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


class MetricsFromLLMService:
    """``GET /metrics`` on one host: the LLM service's ``/metrics``, relayed as bytes.

    Under ``bentoml serve`` that answer already holds every series of the Bento (all services write to
    one multiprocess directory) plus the engine's ``vllm:*`` and the GPU gauges. Relaying it keeps the
    scrape's CPU (BentoML reading the multiprocess files in a thread) out of the gateway, whose event
    loop relays every stream: a CPU-bound thread there holds the GIL in 5 ms slices and delays every
    chunk in flight. Split into pods, or when the LLM service does not answer, BentoML's own route
    answers (the gateway's ``__metrics__`` then gathers each service's series)."""

    def __init__(
        self, app: Any, get_service: Callable[[], Dependencies], one_host: Callable[[Any], bool]
    ) -> None:
        self.app = app
        self.get_service = get_service
        self.one_host = one_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics" and scope["method"] == "GET":
            service = self.get_service()
            if self.one_host(service.llm_backend):
                try:
                    answer = await service.llm_service.request("GET", "/metrics")
                    async with answer:
                        body, status = await answer.read(), answer.status
                        media_type = answer.headers.get("content-type")
                except UpstreamUnavailable:
                    status = 0
                if status == 200:
                    await Response(body, 200, media_type=media_type)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def probe(
    name: str, check: Callable[[], Awaitable[Any]], timeout_s: float = 5.0
) -> tuple[str, dict[str, Any]]:
    """One dependency's readiness; a failure is reported, never raised."""
    try:
        detail = await asyncio.wait_for(check(), timeout_s)
        return name, {"ready": True, **(detail if isinstance(detail, dict) else {})}
    except Exception as exc:
        return name, {"ready": False, "error": f"{type(exc).__name__}: {exc}"}


class RelayToOwner:
    """``POST`` to a typed API that the gateway only passes on (each classic model's route, ``/embed``):
    relayed as bytes to the service that owns it, which validates it with the same input type and answers
    the same 4xx. Validated at the gateway too, every body was parsed, checked and serialised again in the
    gateway's one worker before the owner did the same: one-row tabular requests through the gateway went
    245 -> 327 rows/s at 8 clients and 461 -> 571 at 64 with this relay (two gateways side by side, 2-core
    CPU; benchmarks/results/README.md, "typed routes relayed as bytes"). The typed APIs stay declared on
    the gateway, as the contract its OpenAPI document and the BentoML client read; their bodies never run.
    """

    def __init__(self, app: Any, get_service: Callable[[], Any], owners: dict[str, tuple[str, str]]) -> None:
        self.app = app
        self.get_service = get_service
        self.owners = owners  # path -> (the service's upstream attribute, the dependency's name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = self.owners.get(scope["path"]) if scope["type"] == "http" else None
        if owner is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        attribute, dependency = owner
        upstream = getattr(self.get_service(), attribute)
        request = Request(scope, receive)
        response = await forward(upstream, request, scope["path"], lambda _: dependency_failed(dependency))
        await response(scope, receive, send)
