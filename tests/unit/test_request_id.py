"""x-request-id: taken from the client or made, passed on in the request, returned, and in log lines."""

from __future__ import annotations

import logging

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router
from starlette.testclient import TestClient

from services.request_id import RequestId, RequestIdLogFilter, current, forwarded_request_id

log = logging.getLogger("tests.request_id")


async def echo(request: Request) -> JSONResponse:
    log.warning("handling %s", request.url.path)
    return JSONResponse({"seen": request.headers.get("x-request-id"), "forwarded": forwarded_request_id()})


def client() -> TestClient:
    return TestClient(RequestId(Router(routes=[Route("/echo", echo)])))


def test_the_clients_id_is_kept_passed_on_and_returned() -> None:
    response = client().get("/echo", headers={"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    assert response.json() == {"seen": "req-42", "forwarded": {"x-request-id": "req-42"}}


@pytest.mark.parametrize("given", [None, "has space", "x" * 129, "new\nline"])
def test_a_missing_or_unsafe_id_is_replaced_by_a_fresh_one(given: str | None) -> None:
    headers = {"x-request-id": given} if given is not None else {}
    first, second = (client().get("/echo", headers=headers) for _ in range(2))
    made = first.headers["x-request-id"]
    assert len(made) == 32 and made != second.headers["x-request-id"]
    assert first.json()["seen"] == made
    assert current.get() is None  # nothing leaks outside the request


def test_log_lines_written_during_the_request_carry_its_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestIdLogFilter())
    with caplog.at_level("WARNING", logger="tests.request_id"):
        client().get("/echo", headers={"x-request-id": "req-7"})
        log.warning("outside any request")
    during, outside = caplog.records
    assert during.getMessage() == "handling /echo (request_id=req-7)"
    assert outside.getMessage() == "outside any request"
