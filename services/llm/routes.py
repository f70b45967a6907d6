"""vLLM's HTTP API as the Bento serves it, mounted by the LLM service and by the gateway.

The generation routes go through the backend's response cache; every other path vLLM's server has
(``/v1/models``, ``/v1/responses``, ``/tokenize``, ``/version``, ``/health``, whatever the served model
and a later vLLM add) is relayed by one catch-all route with vLLM's own status codes and bodies, so the
Bento never falls behind the engine. BentoML's own routes (the APIs, ``/metrics``, ``/livez``,
``/readyz``) come before mounted apps; its web UI comes after them and is left to BentoML.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from services.bentoml_adapter import is_bentoml_ui_path
from services.llm.backends import GENERATION_ROUTES, LLMBackend
from services.wire import invalid_json, unservable_field

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]  # HEAD comes with GET
# vLLM routes that steer the engine rather than ask it something: scaling expert parallelism, and the
# routes of its dev mode (VLLM_SERVER_DEV_MODE=1). An operator reaches them on the engine's loopback
# port; through the Bento they are 404. (The profiler routes stay: they exist only when an operator turns
# the profiler on, see INFSTACK_LLM__PROFILER_DIR.)
ENGINE_CONTROL_PATHS = frozenset(
    {
        "/scale_elastic_ep", "/is_scaling_elastic_ep", "/collective_rpc", "/reset_prefix_cache",
        "/reset_mm_cache", "/reset_encoder_cache", "/sleep", "/wake_up", "/is_sleeping", "/pause",
        "/resume", "/is_paused", "/server_info", "/update_weights", "/init_weight_transfer",
    }
)  # fmt: skip
Handler = Callable[[Request], Awaitable[Response]]


class RelayRoute(Route):
    """A catch-all that leaves BentoML's web UI paths to BentoML and never reaches engine controls."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and (
            is_bentoml_ui_path(scope["path"]) or scope["path"].rstrip("/") in ENGINE_CONTROL_PATHS
        ):
            return Match.NONE, {}
        return super().matches(scope)


async def not_json(request: Request) -> Response | None:
    """A 400 in OpenAI's error shape for a JSON POST whose body does not parse (the generation routes
    find out in the engine proxy, which parses their body anyway)."""
    if request.method != "POST" or "json" not in request.headers.get("content-type", ""):
        return None
    try:
        payload = json.loads(await request.body())
    except ValueError as exc:
        return invalid_json(exc)
    return unservable_field(payload)


def llm_routes(get_backend: Callable[[], LLMBackend]) -> list[BaseRoute]:
    def generation(route: str) -> Handler:
        async def handler(request: Request) -> Response:
            return await get_backend().generation(route, request)

        return handler

    async def relay(request: Request) -> Response:
        return await not_json(request) or await get_backend().relay(
            "/" + request.path_params["path"], request
        )

    return [
        *(Route(route, generation(route), methods=["POST"]) for route in GENERATION_ROUTES),
        RelayRoute("/{path:path}", relay, methods=ALL_METHODS),
    ]
