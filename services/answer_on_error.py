"""Answer at once when a request fails before its response has started.

BentoML 1.4's TimeoutMiddleware waits for a response's first message before it looks at the app's
exception. A request whose handler raises before answering (``/readyz`` while a dependency's socket
refuses, during start-up or shutdown) therefore stays open for the whole ``traffic.timeout``, and so
does a graceful shutdown, which waits for it: the gateway took ~40 s to stop after start-up probes
that had timed out on the client side. Installed as a service middleware, this sits inside that
middleware and turns such an exception into a response: 503 for the probes, 500 elsewhere. A probe
that fails logs one line (a dependency still starting is expected), anything else its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
PROBES = ("/readyz", "/livez", "/healthz")


def _reason() -> str:
    import sys

    exc = sys.exc_info()[1]
    detail = str(exc) or (type(exc.__cause__).__name__ if exc is not None and exc.__cause__ else "")
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class AnswerOnError:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, scope: Message, receive: Any, send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            path = scope.get("path", "")
            probe = path in PROBES
            if probe:  # expected while a dependency starts (an engine loads for minutes): one line
                log.warning("%s: not ready (%s)", path, _reason())
            else:
                log.exception("%s failed before answering", path)
            body = {
                "error": "not ready"
                if probe
                else "An unexpected error has occurred, please check the server log."
            }
            await JSONResponse(body, 503 if probe else 500)(scope, receive, send)
