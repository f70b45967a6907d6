"""Identical deterministic requests in flight together are generated once (services/llm/coalesce.py),
through the public port, against the real engine: one engine request, every client the same answer.
Across replicas too: two LLM services sharing a real Redis generate a request once between them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from scripts.procs import BentoServer, RedisServer, metric_value
from services.wire import CACHE_HEADER
from tests.conftest import LLM_TARGET, TINY_LLM, llm_env

CLIENTS = 6


def engine_requests(server: BentoServer) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return metric_value(text, "vllm:request_success_total", finished_reason="length") or 0.0


async def ask_together(url: str, body: dict, clients: int = CLIENTS) -> list[tuple[str, str]]:
    """(cache header, streamed body) of ``clients`` identical streaming requests sent at once."""

    async def one(client: httpx.AsyncClient) -> tuple[str, str]:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as reply:
            assert reply.status_code == 200
            return reply.headers[CACHE_HEADER], (await reply.aread()).decode()

    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(*(one(client) for _ in range(clients)))


def test_identical_requests_in_flight_share_one_generation(gateway_server: BentoServer) -> None:
    body = {"model": TINY_LLM, "prompt": f"coalesce {uuid.uuid4().hex}", "max_tokens": 256,
            "ignore_eos": True, "temperature": 0, "stream": True}  # fmt: skip
    before = engine_requests(gateway_server)
    answers = asyncio.run(ask_together(gateway_server.url, body))
    how = sorted(header for header, _ in answers)
    assert how.count("miss") == 1 and "coalesced" in how and set(how) <= {"miss", "coalesced", "hit"}, how
    assert len({text for _, text in answers}) == 1  # byte for byte the same stream
    assert answers[0][1].rstrip().endswith("data: [DONE]")
    assert engine_requests(gateway_server) - before == 1
    coalesced = metric_value(
        httpx.get(f"{gateway_server.url}/metrics", timeout=30).text,
        "infstack_llm_coalesced_requests_total",
        source="in_flight",
    )
    assert coalesced is not None and coalesced >= how.count("coalesced")


def test_requests_that_differ_are_not_coalesced(gateway_server: BentoServer) -> None:
    prompt = f"distinct {uuid.uuid4().hex}"
    before = engine_requests(gateway_server)

    async def both() -> list[str]:
        async with httpx.AsyncClient(timeout=120) as client:
            replies = await asyncio.gather(*(
                client.post(f"{gateway_server.url}/v1/completions", json={
                    "model": TINY_LLM, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
                    "temperature": 0})
                for max_tokens in (64, 65)
            ))  # fmt: skip
        return [reply.headers[CACHE_HEADER] for reply in replies]

    assert asyncio.run(both()) == ["miss", "miss"]
    assert engine_requests(gateway_server) - before == 2


@pytest.fixture(scope="module")
def replicas(
    bento_factory: Callable[..., BentoServer], shared_redis: RedisServer, session_dir: Path, tiny_llm: str
) -> list[BentoServer]:
    """Two LLM services, each with its own engine, sharing one Redis (as replicas of a deployment do).

    A Redis timeout of 2 s, not the default 250 ms: two CPU engines generating keep both cores of the CI
    machine busy, and once redis-server answered a command later than 250 ms, so that replica served
    without the cache (as it should: tests/integration/test_embedding_stores.py) and generated a second time.
    This test is about the claim between replicas, not about a starved Redis."""
    redis = {
        "INFSTACK_CACHE__BACKEND": "redis",
        "INFSTACK_CACHE__REDIS_URL": shared_redis.url,
        "INFSTACK_CACHE__REDIS_TIMEOUT_MS": "2000",
    }
    return [
        bento_factory(LLM_TARGET, llm_env(session_dir / f"replica{i}", **redis), f"llm-replica{i}")
        for i in range(2)
    ]


def test_replicas_sharing_redis_generate_an_identical_request_once(replicas: list[BentoServer]) -> None:
    body = {"model": TINY_LLM, "prompt": f"replicas {uuid.uuid4().hex}", "max_tokens": 256,
            "ignore_eos": True, "temperature": 0, "stream": True}  # fmt: skip
    before = sum(engine_requests(server) for server in replicas)

    async def both() -> list[list[tuple[str, str]]]:
        return await asyncio.gather(*(ask_together(server.url, body, clients=3) for server in replicas))

    answers = asyncio.run(both())
    generated = sum(engine_requests(server) for server in replicas) - before
    assert generated == 1, answers
    texts = {text for per_replica in answers for _, text in per_replica}
    assert len(texts) == 1 and texts.pop().rstrip().endswith("data: [DONE]")
    waited = [  # the replica that did not generate answered every client from the stored answer
        metric_value(httpx.get(f"{server.url}/metrics", timeout=30).text,
                     "infstack_llm_coalesced_requests_total", source="stored") or 0.0
        for server in replicas
    ]  # fmt: skip
    assert max(waited) >= 3, (waited, answers)
