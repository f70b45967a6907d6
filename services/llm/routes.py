"""vLLM's HTTP API as the Bento serves it, mounted by the LLM service and by the gateway.

The generation routes go through the backend's response cache; every other path vLLM's server has
(``/v1/models``, ``/v1/responses``, ``/tokenize``, ``/version``, ``/health``, whatever the served model
and a later vLLM add) is relayed by one catch-all route with vLLM's own status codes and bodies, so the
Bento never falls behind the engine. BentoML's own routes (the APIs, ``/metrics``, ``/livez``,
``/readyz``) come before mounted apps; its web UI comes after them and is left to BentoML.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from services.bentoml_adapter import is_bentoml_ui_path
from services.llm.backends import GENERATION_ROUTES, LLMBackend

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]  # HEAD comes with GET
Handler = Callable[[Request], Awaitable[Response]]


class RelayRoute(Route):
    """A catch-all that leaves BentoML's web UI paths to BentoML."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and is_bentoml_ui_path(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


def llm_routes(get_backend: Callable[[], LLMBackend]) -> list[BaseRoute]:
    def generation(route: str) -> Handler:
        async def handler(request: Request) -> Response:
            return await get_backend().generation(route, request)

        return handler

    async def relay(request: Request) -> Response:
        return await get_backend().relay("/" + request.path_params["path"], request)

    return [
        *(Route(route, generation(route), methods=["POST"]) for route in GENERATION_ROUTES),
        RelayRoute("/{path:path}", relay, methods=ALL_METHODS),
    ]
