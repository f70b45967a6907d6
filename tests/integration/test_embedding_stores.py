"""Store behaviour across processes: restarts, two models on one store, Redis sharing and outages."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from scripts.procs import BentoServer, RedisServer, metric_value
from tests.conftest import EMBEDDING_TARGET, embedding_env

pytestmark = pytest.mark.integration


def embed(server: BentoServer, texts: list[str]) -> dict:
    response = httpx.post(f"{server.url}/embed", json={"texts": texts}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def texts(n: int = 4) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"store test {tag} number {i}" for i in range(n)]


def redis_up(server: BentoServer) -> float | None:
    metrics = httpx.get(f"{server.url}/metrics").text
    return metric_value(metrics, "infstack_cache_backend_up", cache="embedding", backend="redis")


def test_disk_cache_survives_restart_and_models_do_not_share_entries(
    bento_factory: Callable[..., BentoServer], tmp_path: Path, other_model_dir: Path
) -> None:
    sample = texts()
    first = bento_factory(EMBEDDING_TARGET, embedding_env(tmp_path), "persist-1")
    computed = embed(first, sample)
    first.stop()

    restarted = bento_factory(EMBEDDING_TARGET, embedding_env(tmp_path), "persist-2")
    after = embed(restarted, sample)
    assert after["cache_hits"] == len(sample)
    np.testing.assert_array_equal(np.float32(after["embeddings"]), np.float32(computed["embeddings"]))
    restarted.stop()

    other_env = embedding_env(tmp_path, INFSTACK_EMBEDDING__MODEL_ID=str(other_model_dir))
    other = bento_factory(EMBEDDING_TARGET, other_env, "persist-other")
    body = embed(other, sample)
    assert body["cache_hits"] == 0  # same store, same texts, other namespace
    assert body["dimension"] == 128
    assert np.float32(body["embeddings"]).shape == (len(sample), 128)
    assert embed(other, sample)["cache_hits"] == len(sample)
    other.stop()


def test_replicas_share_redis_and_survive_its_outage(
    bento_factory: Callable[..., BentoServer], redis_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    redis_server = redis_factory()
    env = embedding_env(tmp_path, INFSTACK_CACHE__BACKEND="redis", INFSTACK_CACHE__REDIS_URL=redis_server.url)
    replica_a = bento_factory(EMBEDDING_TARGET, env, "redis-a")
    replica_b = bento_factory(EMBEDDING_TARGET, env, "redis-b")

    sample = texts()
    computed = embed(replica_a, sample)
    shared = embed(replica_b, sample)
    assert shared["cache_hits"] == len(sample)
    np.testing.assert_array_equal(np.float32(shared["embeddings"]), np.float32(computed["embeddings"]))
    assert redis_up(replica_a) == 1

    redis_server.stop()  # mid-run outage: requests still succeed, computed without the cache
    during = texts()
    outage = embed(replica_a, during)
    assert outage["cache_hits"] == 0
    assert embed(replica_a, sample)["cache_hits"] == 0
    assert redis_up(replica_a) == 0
    info = httpx.post(f"{replica_a.url}/info", json={}).json()
    assert info["cache_backend_up"] is False

    redis_server.start()  # same port, empty: recovery needs no restart of the service
    time.sleep(0.6)  # the retry interval in embedding_env
    assert embed(replica_a, during)["cache_hits"] == 0
    assert embed(replica_a, during)["cache_hits"] == len(during)
    assert redis_up(replica_a) == 1


def test_redis_down_at_start_then_recovers(
    bento_factory: Callable[..., BentoServer], redis_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    redis_server = redis_factory(run=False)
    env = embedding_env(tmp_path, INFSTACK_CACHE__BACKEND="redis", INFSTACK_CACHE__REDIS_URL=redis_server.url)
    server = bento_factory(EMBEDDING_TARGET, env, "redis-late")
    sample = texts()
    assert embed(server, sample)["cache_hits"] == 0
    assert embed(server, sample)["cache_hits"] == 0  # nothing cached while Redis is away
    assert redis_up(server) == 0

    redis_server.start()
    time.sleep(0.6)
    embed(server, sample)
    assert embed(server, sample)["cache_hits"] == len(sample)
    assert redis_up(server) == 1
    server.stop()
