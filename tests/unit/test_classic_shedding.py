"""The 503 a shed request gets: BentoML's generic body replaced on the batched routes only."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from services import metrics
from services.classic.shedding import BatchedRoute, ShedMessage


async def generic_503(request: object) -> JSONResponse:
    # What BentoML answers when its dispatcher sheds a request.
    return JSONResponse({"error": "An unexpected error has occurred, please check the server log."}, 503)


def client() -> TestClient:
    app = Starlette(routes=[Route(p, generic_503, methods=["POST"]) for p in ("/predict_tabular", "/other")])
    return TestClient(ShedMessage(app, routes={"/predict_tabular": BatchedRoute("tabular", 250)}))


def test_a_shed_request_gets_the_bound_and_retry_after_and_is_counted() -> None:
    counter = metrics.CLASSIC_OVERLOADED.labels("tabular")
    before = counter._value.get()
    response = client().post("/predict_tabular", json={})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    body = response.json()
    assert body["model"] == "tabular" and body["max_latency_ms"] == 250
    assert "max_latency_ms=250" in body["error"] and "overloaded" in body["error"]
    assert counter._value.get() == before + 1


def test_other_routes_pass_through_untouched() -> None:
    response = client().post("/other", json={})
    assert response.status_code == 503 and "unexpected error" in response.json()["error"]
    assert "retry-after" not in response.headers
