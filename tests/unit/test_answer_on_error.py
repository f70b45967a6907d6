"""A request that fails before answering gets an answer at once (BentoML's timeout middleware would
otherwise hold it, and a graceful shutdown, for the whole traffic timeout)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route, Router
from starlette.testclient import TestClient

from services.answer_on_error import AnswerOnError


async def fails(request: Request) -> None:
    raise TimeoutError("a dependency's readiness check timed out")


async def fails_mid_stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError("after the response started")

    return StreamingResponse(chunks())


def client() -> TestClient:
    routes = [
        Route("/readyz", fails),
        Route("/predict", fails, methods=["POST"]),
        Route("/stream", fails_mid_stream),
    ]
    # A bare router: inside BentoML, nothing between this middleware and the routes answers errors.
    return TestClient(AnswerOnError(Router(routes=routes)), raise_server_exceptions=True)


def test_a_probe_that_raises_is_a_503_not_a_hang() -> None:
    response = client().get("/readyz")
    assert response.status_code == 503 and response.json() == {"error": "not ready"}


def test_an_api_that_raises_before_answering_is_a_500() -> None:
    response = client().post("/predict", json={})
    assert response.status_code == 500 and "unexpected error" in response.json()["error"]


def test_an_error_after_the_response_started_is_not_hidden() -> None:
    with pytest.raises(RuntimeError, match="after the response started"):
        client().get("/stream")


def test_a_failing_probe_logs_one_line_and_an_api_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """An engine loads for minutes; each readiness poll meanwhile is one line, not a traceback."""
    with caplog.at_level("WARNING", logger="services.answer_on_error"):
        client().get("/readyz")
    [probe] = caplog.records
    assert probe.getMessage().startswith("/readyz: not ready (") and probe.exc_info is None
    caplog.clear()
    with caplog.at_level("WARNING", logger="services.answer_on_error"):
        client().post("/predict", json={})
    [api] = caplog.records
    assert api.exc_info is not None
