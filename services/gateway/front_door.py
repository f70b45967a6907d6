"""The gateway's front door: API keys, request size, and admission with ``Retry-After``.

Pure ASGI middlewares, outermost of ours, so a refused request costs no routing or body parsing:

- ``ApiKeys``: with keys configured, every route needs ``Authorization: Bearer <key>`` (what the openai SDK
  sends for ``api_key``), compared in constant time against every key; probes stay open, ``/metrics`` too
  unless ``metrics_need_key``. ``/v1/*`` answers OpenAI's 401 shape.
- ``BodyLimit``: a body over ``max_body_bytes`` is a 413, by its ``content-length`` or while it arrives.
- ``Admission``: past ``max_concurrency`` requests in flight a 503, past ``llm_max_inflight`` LLM requests a
  429, both at once and with ``Retry-After``, instead of a queue that grows until clients time out.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.bentoml_adapter import is_bentoml_ui_path
from services.wire import RETRY_AFTER_S, openai_error

PROBES = frozenset({"/livez", "/readyz", "/healthz"})


def _refusal(
    path: str, status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    if path.startswith("/v1/"):
        response = openai_error(message, status, kind)
        response.headers.update(headers or {})
        return response
    return JSONResponse({"error": message}, status, headers)


def read_keys(keys: list[str], keys_file: Any) -> list[bytes]:
    """The accepted keys: from settings and from the file (one per line, blank lines and # comments skipped)."""
    found = [k for k in keys if k]
    if keys_file is not None:
        lines = keys_file.expanduser().read_text().splitlines()
        found += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [k.encode() for k in found]


class ApiKeys:
    def __init__(self, app: ASGIApp, keys: list[bytes], protect_metrics: bool) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = PROBES if protect_metrics else PROBES | {"/metrics"}

    def _accepted(self, scope: Scope) -> bool:
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        scheme, _, given = header.partition(b" ")
        matches = [hmac.compare_digest(given.strip(), key) for key in self.keys]  # every key: constant time
        return scheme.lower() == b"bearer" and any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.keys
            or scope["path"] in self.open_paths
            or self._accepted(scope)
        ):
            await self.app(scope, receive, send)
            return
        response = _refusal(scope["path"], 401, "missing or invalid API key: send Authorization: Bearer <key>",
                            "AuthenticationError", {"WWW-Authenticate": "Bearer"})  # fmt: skip
        await response(scope, receive, send)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, scope: Scope) -> JSONResponse:
        return _refusal(scope["path"], 413, f"request body larger than max_body_bytes={self.max_bytes}",
                        "RequestEntityTooLarge")  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(scope)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._too_large(scope)(scope, receive, send)


class _TooLarge(Exception):
    pass


class Admission:
    """Counts requests in flight in this worker, all of them and those bound for the LLM engine."""

    def __init__(
        self, app: ASGIApp, max_inflight: int, max_llm_inflight: int, not_llm: frozenset[str]
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.max_llm_inflight = max_llm_inflight
        self.not_llm = not_llm  # the gateway's own routes; every other path is relayed to the engine
        self.inflight = self.llm_inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        llm = scope["path"] not in self.not_llm and not is_bentoml_ui_path(scope["path"])
        retry = {"Retry-After": RETRY_AFTER_S}
        if self.inflight >= self.max_inflight:
            message = f"overloaded: {self.inflight} requests in flight (max_concurrency={self.max_inflight})"
            await _refusal(scope["path"], 503, message, "ServiceUnavailableError", retry)(
                scope, receive, send
            )
            return
        if llm and self.llm_inflight >= self.max_llm_inflight:
            message = f"overloaded: {self.llm_inflight} LLM requests in flight (llm_max_inflight={self.max_llm_inflight})"
            await _refusal(scope["path"], 429, message, "RateLimitError", retry)(scope, receive, send)
            return
        self.inflight += 1
        self.llm_inflight += llm
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            self.llm_inflight -= llm
