"""Every BentoML internal the project relies on, in one place (written against BentoML 1.4.40).

BentoML has no public API for these. Each one is exercised by tests/unit/test_bentoml_adapter.py, which
fails loudly when an upgrade moves or changes it; nothing else in the project reaches inside BentoML.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

STREAM_MEDIA_TYPE = "text/event-stream"

# Routes BentoML's app adds *after* the apps mounted with ``@bentoml.asgi_app`` (so a catch-all route in a
# mounted app would shadow them): the web UI and its assets, and the OpenAPI document.
UI_PATHS = frozenset({"/", "/docs.json"})
UI_PREFIXES = ("/static_content/", "/assets/")


def dependency_url(service_name: str) -> str | None:
    """Where BentoML told this worker a dependency listens: ``file:///...`` (a Unix socket on this host,
    under ``bentoml serve``) or ``http://host:port`` (``--depends`` in a split deployment). None where
    the dependency is built inside this process (a service class instantiated directly)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    mapping: dict[str, str] = BentoMLContainer.remote_runner_mapping.get()
    return mapping.get(service_name)


def assigned_gpus() -> list[int] | None:
    """The GPUs BentoML gave this service's workers (it sets ``CUDA_VISIBLE_DEVICES`` from
    ``resources={"gpu": N}``), as NVML indices; None where it set nothing (every GPU is visible)."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    return [int(i) for i in visible.split(",") if i.strip().isdigit()]


def gpu_assignment_error(service: str, count_gpus: Callable[[], int | None]) -> str | None:
    """Why this service cannot use the GPUs BentoML gave it, or None. BentoML's allocator hands out
    indices past the last GPU, with only a warning, when the services together ask for more GPUs than
    the machine has (seen on a 1-GPU H200: the LLM worker then crashed at start, forever).
    ``count_gpus`` (NVML) is asked only where BentoML assigned GPUs: a CPU service never starts NVML."""
    assigned = assigned_gpus()
    if assigned is None:
        return None
    gpus_on_machine = count_gpus()
    if gpus_on_machine is None:
        return None
    missing = [i for i in assigned if i >= gpus_on_machine]
    if not missing:
        return None
    return (
        f"BentoML gave the {service} service GPU {','.join(map(str, missing))}, but this machine has "
        f"{gpus_on_machine} GPU(s): the Bento's services together ask for more GPUs than there are (the "
        "LLM service tensor x pipeline x data parallel size, the embedding service one of its own with "
        "INFSTACK_EMBEDDING__DEVICE=cuda). To share a GPU, name it: INFSTACK_EMBEDDING__DEVICE=cuda:0"
    )


def stop_server(reason: str) -> None:
    """Stop the whole ``bentoml serve`` (every service) from inside one of its workers, after logging
    ``reason`` once: BentoML would otherwise restart a worker whose start-up fails, forever, behind a
    server that looks alive. The supervisor (circus) is the worker's parent process."""
    import logging
    import os
    import signal

    logging.getLogger("services").error("stopping the server: %s", reason)
    os.kill(os.getppid(), signal.SIGTERM)


def worker_index() -> int:
    """This worker's index among its service's workers (1 for the first)."""
    from bentoml import server_context

    return int(server_context.worker_index or 1)


def mark_streaming(service: Any, api: str) -> None:
    """Mark a coroutine API that returns a stream as a streaming API.

    BentoML marks an API as streaming only when its function is an async generator. Our ``generate`` APIs
    are coroutines that open the engine request first and then return the stream, so an engine error
    becomes an HTTP 4xx instead of a stream that breaks after the 200. Without the mark, ``/schema.json``
    lacks ``is_stream`` and BentoML's clients read the whole stream as one string.
    """
    method = service.apis[api]
    method.is_stream = True
    if not method.output_spec.media_type:
        method.output_spec.media_type = STREAM_MEDIA_TYPE


def openapi_document(service: Any) -> dict[str, Any]:
    """The OpenAPI document BentoML serves at ``/docs.json`` for ``service`` (a ``bentoml.Service``)."""
    document: dict[str, Any] = service.openapi_spec.asdict()
    return document


def add_middleware(service: Any, middleware: type, **options: Any) -> None:
    """``Service.add_asgi_middleware`` (public, but invisible to a type checker on the decorated class)."""
    service.add_asgi_middleware(middleware, **options)


def is_bentoml_ui_path(path: str) -> bool:
    return path in UI_PATHS or path.startswith(UI_PREFIXES)


class TimerReleasingTimeout:
    """BentoML's ``TimeoutMiddleware`` (504 when no response starts within ``traffic.timeout``), with its
    timer cancelled once the response starts.

    BentoML 1.4.40 never cancels the ``loop.call_later`` timer it arms per request, so the loop keeps
    every request's timer, future and context copy for the whole timeout: the gateway (600 s) grew by
    ~100 MiB over a 10-minute soak at 117 req/s (benchmarks/results/soak_cpu.json), flat only once the
    first timers expired. An app that fails before it sends anything fails at once here, instead of
    holding its client until the timeout.
    """

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import asyncio

        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def start() -> None:
            if not started.done():
                started.set_result(None)

        def expire() -> None:
            if not started.done():
                started.set_exception(TimeoutError())

        async def send_and_mark(message: Any) -> None:
            start()
            await send(message)

        timer = loop.call_later(self.timeout, expire)
        app = asyncio.ensure_future(self.app(scope, receive, send_and_mark))
        app.add_done_callback(lambda _: start())
        try:
            await started
        except asyncio.CancelledError:  # the server gave up on this request: so does the app
            app.cancel()
            raise
        except TimeoutError:
            if app.cancel():
                from starlette.responses import JSONResponse

                body = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(body, status_code=504)(scope, receive, send)
                return
        finally:
            timer.cancel()
        await app


# Paths BentoML's request metrics keep as their own ``endpoint`` label; every other path is "other".
# BentoML labels by the raw request path, so each new path (a /v1/responses/<id>, a scanner's probe, a
# fuzzer's) added series without bound, and paths with odd characters broke the exposition.
METRIC_ENDPOINTS = frozenset(
    {
        "/", "/docs.json", "/schema.json", "/v1/completions", "/v1/chat/completions", "/v1/embeddings",
        "/v1/models", "/v1/responses", "/v1/messages", "/tokenize", "/detokenize", "/version", "/health",
        "/ping", "/invocations", "/start_profile", "/stop_profile",
    }
)  # fmt: skip
OTHER_ENDPOINT = "other"


def metric_endpoint(path: str, api_routes: frozenset[str]) -> str:
    """The ``endpoint`` label for ``path``: itself when it is a known route, else ``other``."""
    return path if path in METRIC_ENDPOINTS or path in api_routes else OTHER_ENDPOINT


def _bounded_metrics_middleware() -> type:
    from bentoml._internal.context import server_context
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    class BoundedEndpointMetrics(RunnerTrafficMetricsMiddleware):
        """BentoML's request metrics with a bounded ``endpoint`` label (:func:`metric_endpoint`). BentoML
        reads the label from ``scope["path"]``; it sees the label, the app behind it the real path."""

        def __init__(self, app: Any, **options: Any) -> None:
            super().__init__(_RealPath(app), **options)
            self._api_routes: frozenset[str] | None = None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await super().__call__(scope, receive, send)
                return
            if self._api_routes is None:
                self._api_routes = frozenset(server_context.service_routes)
            label = metric_endpoint(scope["path"], self._api_routes)
            if label != scope["path"]:
                scope = {**scope, "path": label, _REAL_PATH: scope["path"]}
            await super().__call__(scope, receive, send)

    return BoundedEndpointMetrics


_REAL_PATH = "infstack.real_path"


class _RealPath:
    """Gives the app behind the metrics middleware the request's real path back."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if _REAL_PATH in scope:
            scope = {**scope, "path": scope[_REAL_PATH]}
            del scope[_REAL_PATH]
        await self.app(scope, receive, send)


def fix_bentoml() -> None:
    """Swap in this module's fixes where BentoML 1.4.40 builds its own middlewares (its app factories
    import each class by name when they assemble the stack, after the service module is imported):
    :class:`TimerReleasingTimeout`, bounded metric endpoints, tracing only when exported, and the
    dispatcher fixes of services/bentoml_dispatch.py. Call at import of every service module; idempotent."""
    from bentoml._internal.server.http import instruments, traffic

    from services.bentoml_dispatch import patch_dispatchers

    traffic.TimeoutMiddleware = TimerReleasingTimeout  # type: ignore[misc,assignment]
    _trace_only_when_exporting()
    _cache_mime_types()
    patch_dispatchers()
    if not getattr(instruments.RunnerTrafficMetricsMiddleware, "bounded", False):
        bounded = _bounded_metrics_middleware()
        bounded.bounded = True  # type: ignore[attr-defined]
        instruments.RunnerTrafficMetricsMiddleware = bounded  # type: ignore[misc,assignment]


def _trace_only_when_exporting() -> None:
    """BentoML 1.4.40 wraps every request in OpenTelemetry's ASGI middleware, exporter or not; with none
    configured (its default) the spans go nowhere, yet cost the classic worker ~20% of its CPU at c=64
    (py-spy, tabular). Where BentoML builds the stack, that middleware now leaves the app unwrapped
    unless ``tracing.exporter_type`` is set (BentoML reads it from ``@bentoml.service(tracing=...)``);
    our ``x-request-id`` still names every request and log line (services/request_id.py). What goes:
    BentoML's ``X-BentoML-Request-ID`` header and the trace ids in its log lines."""
    from opentelemetry.instrumentation import asgi

    traced = asgi.OpenTelemetryMiddleware
    if getattr(traced, "only_when_exporting", False):
        return

    class OnlyWhenExporting:
        only_when_exporting = True

        def __new__(cls, app: Any, **options: Any) -> Any:
            from bentoml._internal.configuration.containers import BentoMLContainer

            if BentoMLContainer.tracing.exporter_type.get() is None:
                return app
            return traced(app, **options)

    asgi.OpenTelemetryMiddleware = OnlyWhenExporting  # type: ignore[misc,assignment]


def _cache_mime_types() -> None:
    """BentoML 1.4.40 derives a response's media type from its output model's whole JSON schema, built
    anew for every response (``IOMixin.mime_type``): for the classic APIs' ``list[Prediction]`` that was
    ~40% of a request's CPU in the worker (py-spy, tabular at c=1). The answer depends on the class only
    (its ``media_type``, multipart fields and schema, fixed when the API is declared), so compute it once
    per class."""
    from _bentoml_sdk import io_models

    if getattr(io_models.IOMixin.mime_type, "cached", False):
        return
    compute = io_models.IOMixin.mime_type.__func__
    known: dict[type, str] = {}

    def mime_type(cls: type) -> str:
        if (found := known.get(cls)) is None:
            found = known[cls] = compute(cls)
        return found

    mime_type.cached = True  # type: ignore[attr-defined]
    io_models.IOMixin.mime_type = classmethod(mime_type)
