"""The gateway's front door: API keys in constant time, body size, admission with Retry-After."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, Router
from starlette.testclient import TestClient

from services.gateway.front_door import Admission, ApiKeys, BodyLimit, read_keys


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


ROUTES = [Route("/v1/completions", echo, methods=["POST"]), Route("/embed", echo, methods=["POST"]),
          Route("/readyz", ok), Route("/metrics", ok)]  # fmt: skip


def test_keys_come_from_settings_and_a_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nfile-key\n\n  other-key  \n")
    assert read_keys(["a", ""], keys_file) == [b"a", b"file-key", b"other-key"]
    assert read_keys([], None) == []


@pytest.mark.parametrize("protect_metrics", [False, True])
def test_every_route_but_the_probes_needs_a_key(protect_metrics: bool) -> None:
    client = TestClient(ApiKeys(Router(routes=ROUTES), [b"k1", b"k2"], protect_metrics))
    refused = client.post("/v1/completions", json={})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"]["type"] == "AuthenticationError"  # OpenAI's shape on /v1/*
    assert client.post("/embed", json={}, headers={"Authorization": "Bearer nope"}).json() == {
        "error": "missing or invalid API key: send Authorization: Bearer <key>"
    }
    assert client.post("/embed", json={}, headers={"Authorization": "Basic k1"}).status_code == 401
    assert client.post("/v1/completions", json={}, headers={"Authorization": "Bearer k2"}).status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == (401 if protect_metrics else 200)


def test_no_keys_no_auth() -> None:
    assert TestClient(ApiKeys(Router(routes=ROUTES), [], False)).post("/embed", json={}).status_code == 200


def test_a_body_over_the_limit_is_a_413_by_length_or_while_streaming() -> None:
    client = TestClient(BodyLimit(Router(routes=ROUTES), max_bytes=1024))
    assert client.post("/embed", content=b"x" * 1024).json() == {"bytes": 1024}
    by_length = client.post("/v1/completions", content=b"x" * 1025)
    assert by_length.status_code == 413 and "max_body_bytes=1024" in by_length.json()["error"]["message"]

    def chunks():  # no content-length: counted as it arrives
        for _ in range(4):
            yield b"y" * 400

    assert client.post("/embed", content=chunks()).status_code == 413


def test_past_the_limits_requests_are_refused_at_once_with_retry_after() -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> PlainTextResponse:
        await release.wait()
        return PlainTextResponse("done")

    routes = [
        Route("/v1/completions", slow, methods=["POST"]),
        Route("/embed", slow, methods=["POST"]),
        *ROUTES[2:],
    ]
    app = Admission(Router(routes=routes), max_inflight=3, max_llm_inflight=2, not_llm=frozenset({"/embed"}))

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            held = [asyncio.create_task(client.post("/v1/completions")) for _ in range(2)]
            await asyncio.sleep(0.05)
            llm_refused = await client.post("/v1/completions")  # the third LLM request: 429
            held.append(asyncio.create_task(client.post("/embed")))
            await asyncio.sleep(0.05)
            all_refused = await client.post("/embed")  # the fourth request: 503
            probe = await client.get("/readyz")  # never counted, never refused
            release.set()
            return [llm_refused, all_refused, probe, *(await asyncio.gather(*held))]

    llm_refused, all_refused, probe, *held = asyncio.run(run())
    assert (llm_refused.status_code, llm_refused.headers["retry-after"]) == (429, "1")
    assert "llm_max_inflight=2" in llm_refused.json()["error"]["message"]
    assert (all_refused.status_code, all_refused.headers["retry-after"]) == (503, "1")
    assert "max_concurrency=3" in all_refused.json()["error"]
    assert probe.status_code == 200 and [r.status_code for r in held] == [200, 200, 200]
    assert (app.inflight, app.llm_inflight) == (0, 0)
