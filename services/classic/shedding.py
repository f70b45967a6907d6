"""What a client of a batchable API sees when adaptive batching sheds its request (or a dependency fails).

BentoML's dispatcher refuses a request it predicts would miss ``max_latency_ms`` by raising
``ServiceUnavailable`` outside the API function, and BentoML answers that with a generic
"unexpected error" body. This ASGI middleware, on the batchable routes only, replaces that body with
one that names the model and the bound, adds ``Retry-After``, and counts the refusal. It also stamps
every answer of those routes with the model-store tag that produced it (a batchable API's body is a
per-row list, so the tag travels in a header).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from starlette.responses import JSONResponse

from services import metrics
from services.wire import MODEL_HEADER, RETRY_AFTER_S, dependency_failed

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class BatchedRoute:
    """What the middleware needs to word a batched route's errors."""

    model: str  # the model's kind (services/classic/registry.py): the metrics label and its key in service.models
    max_latency_ms: int
    dependency: str | None = None  # the service whose failure becomes this route's 502


class DependencyUnavailable(BentoMLException):
    """Raised by an API whose dependency refused (503) or failed: a 502, not our overload, so the
    middleware does not report a batching bound that was never hit."""

    error_code = HTTPStatus.BAD_GATEWAY


def overloaded(model: str, max_latency_ms: int) -> JSONResponse:
    """The 503 body when adaptive batching sheds a request: says why and what bound it hit."""
    return JSONResponse(
        {
            "error": f"overloaded: the {model} model cannot answer within max_latency_ms={max_latency_ms}"
            " at the current load; retry later",
            "model": model,
            "max_latency_ms": max_latency_ms,
        },
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_S},
    )


class ShedMessage:
    """Pure ASGI (no per-chunk wrapper cost on other routes): ``routes`` maps a path to its model.
    BentoML words every 5xx as "unexpected error"; on these routes a 503 is the dispatcher's shed
    and a 502 a failed dependency, so both get a body that says so (BentoML's headers are kept)."""

    def __init__(self, app: Any, routes: dict[str, BatchedRoute]) -> None:
        self.app = app
        self.routes = routes
        self._tags: dict[str, bytes] = {}
        for route in routes.values():  # exported at 0 from the start: a first shed is then an increase
            metrics.CLASSIC_OVERLOADED.labels(route.model)

    def _tag(self, model: str) -> bytes:
        # Resolved on first use: the service instance (and its ``latest`` tags) exists only by then.
        if model not in self._tags:
            self._tags[model] = str(bentoml.get_current_service().models[model].tag).encode()
        return self._tags[model]

    def _replacement(self, status: int, route: BatchedRoute) -> JSONResponse | None:
        if status == 503:
            metrics.CLASSIC_OVERLOADED.labels(route.model).inc()
            return overloaded(route.model, route.max_latency_ms)
        if status == 502 and route.dependency is not None:
            return dependency_failed(route.dependency)
        return None

    async def __call__(self, scope: Message, receive: Any, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        replacement: JSONResponse | None = None

        async def send_with_tag(message: Message) -> None:
            nonlocal replacement
            if message["type"] == "http.response.start":
                if (replacement := self._replacement(message["status"], route)) is not None:
                    kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _BODY_HEADERS]
                    replacement.raw_headers = [*kept, *replacement.raw_headers]
                    return  # BentoML's body is dropped; ours goes out once its body has ended
                message["headers"] = [
                    *message.get("headers", []),
                    (MODEL_HEADER.encode(), self._tag(route.model)),
                ]
            elif replacement is not None:
                if not message.get("more_body", False):
                    await replacement(scope, receive, send)
                return
            await send(message)

        await self.app(scope, receive, send_with_tag)


_BODY_HEADERS = (b"content-length", b"content-type")
