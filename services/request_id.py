"""One id per request, from the client to vLLM and back: ``x-request-id``.

The gateway takes the client's ``x-request-id`` or makes one, passes it on with every hop it relays (the
relays forward end-to-end headers; vLLM uses it as its own request id), and returns it to the client.
Every service keeps the id of the request it is serving in a context variable, and a logging filter adds
it to each log line written meanwhile, BentoML's access lines included: one grep finds a request's
whole path.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from services.bentoml_adapter import add_middleware

HEADER = "x-request-id"
_HEADER = HEADER.encode()
_VALID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # what we pass on and print: no spaces, no control chars
current: ContextVar[str | None] = ContextVar("infstack_request_id", default=None)


def _from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key.lower() == _HEADER:
            text = value.decode("latin-1")
            return text if _VALID.fullmatch(text) else None
    return None


class RequestId:
    """ASGI middleware: the request's id in the scope's headers, the context variable and the response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != _HEADER]
        request_id = _from_headers(scope.get("headers", [])) or uuid.uuid4().hex
        scope = {**scope, "headers": [*headers, (_HEADER, request_id.encode())]}
        token = current.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                message["headers"] = [*kept, (_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current.reset(token)


def forwarded_request_id() -> dict[str, str]:
    """The header that carries the current request's id to the next hop (empty outside a request)."""
    request_id = current.get()
    return {HEADER: request_id} if request_id is not None else {}


class RequestIdLogFilter(logging.Filter):
    """Adds ``request_id=...`` to every record written while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current.get()
        # Our own attribute: BentoML's log filter sets ``request_id`` (its span id) on traced requests.
        if request_id is not None and not getattr(record, "infstack_request_id", None):
            record.infstack_request_id = request_id
            record.msg = f"{record.msg} (request_id={request_id})"
        return True


def with_request_ids(service: Any) -> None:
    """Give a BentoML service the middleware (outermost of ours) and this process's log lines the id."""
    add_middleware(service, RequestId)
    log_request_ids()


def log_request_ids() -> None:
    """Install the filter on every handler of this process (BentoML configures them at start-up)."""
    request_filter = RequestIdLogFilter()
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, RequestIdLogFilter) for f in handler.filters):
                handler.addFilter(request_filter)
