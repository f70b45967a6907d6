"""The 503 a shed request gets: BentoML's generic body replaced on the batched routes only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from services import metrics
from services.classic.shedding import BatchedRoute, ShedMessage


def generic(status: int) -> Callable[[object], Awaitable[JSONResponse]]:
    async def endpoint(request: object) -> JSONResponse:
        # What BentoML answers for any 5xx, the dispatcher's shed included.
        body = {"error": "An unexpected error has occurred, please check the server log."}
        return JSONResponse(body, status, headers={"x-bentoml-request-id": "42"})

    return endpoint


def client() -> TestClient:
    routes = [
        Route("/predict_tabular", generic(503), methods=["POST"]),
        Route("/classify_text", generic(502), methods=["POST"]),
        Route("/other", generic(503), methods=["POST"]),
    ]
    batched = {
        "/predict_tabular": BatchedRoute("tabular", 250),
        "/classify_text": BatchedRoute("text", 5000, dependency="embedding_cache"),
    }
    return TestClient(ShedMessage(Starlette(routes=routes), routes=batched))


def test_a_shed_request_gets_the_bound_and_retry_after_and_is_counted() -> None:
    counter = metrics.CLASSIC_OVERLOADED.labels("tabular")
    before = counter._value.get()
    response = client().post("/predict_tabular", json={})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    body = response.json()
    assert body["model"] == "tabular" and body["max_latency_ms"] == 250
    assert "max_latency_ms=250" in body["error"] and "overloaded" in body["error"]
    assert counter._value.get() == before + 1
    assert response.headers["x-bentoml-request-id"] == "42"  # still traceable to the server log


def test_a_failed_dependency_is_a_502_naming_it_not_an_overload() -> None:
    counter = metrics.CLASSIC_OVERLOADED.labels("text")
    before = counter._value.get()
    response = client().post("/classify_text", json={})
    assert response.status_code == 502 and response.headers["retry-after"] == "1"
    body = response.json()
    assert "embedding_cache" in body["error"] and body["dependency"] == "embedding_cache"
    assert "max_latency_ms" not in body  # no batching bound was hit
    assert counter._value.get() == before


def test_other_routes_pass_through_untouched() -> None:
    response = client().post("/other", json={})
    assert response.status_code == 503 and "unexpected error" in response.json()["error"]
    assert "retry-after" not in response.headers
