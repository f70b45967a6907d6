"""A dead backend degrades to misses and dropped writes, then recovers by itself (real Redis)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import REGISTRY

from scripts.procs import RedisServer, free_port
from services.cache.redis_store import RedisStore
from services.cache.store import FailSoftStore


def _up(cache: str) -> float | None:
    return REGISTRY.get_sample_value("infstack_cache_backend_up", {"cache": cache, "backend": "redis"})


def _errors(cache: str, op: str) -> float:
    labels = {"cache": cache, "backend": "redis", "op": op}
    return REGISTRY.get_sample_value("infstack_cache_backend_errors_total", labels) or 0.0


def test_unreachable_redis_reads_as_misses_and_is_skipped_until_retry() -> None:
    store = FailSoftStore(RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=100), "t-down", 60)
    assert store.mget(["a", "b"]) == [None, None]
    store.mset([("a", b"1")])  # dropped, no exception
    assert not store.is_up
    assert _up("t-down") == 0
    assert _errors("t-down", "get") == 1
    started = time.perf_counter()
    assert store.mget(["a"]) == [None]
    assert time.perf_counter() - started < 0.01  # skipped: no connection attempt while down
    assert _errors("t-down", "get") == 1


def test_with_redis_down_every_process_generates_for_itself() -> None:
    """A claim that cannot be checked must not make a request wait: it is taken, and seen by no one."""
    store = FailSoftStore(RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=100), "t-claims", 60)
    assert store.claim("claim:k", 10) and store.claim("claim:k", 10)
    assert not store.is_claimed("claim:k")
    store.extend("claim:k", 10)  # no exception
    store.release("claim:k")
    assert _errors("t-claims", "claim") == 1  # then skipped while down


def test_store_recovers_when_redis_comes_back(redis_factory: Callable[..., RedisServer]) -> None:
    redis_server = redis_factory(run=False)
    store = FailSoftStore(RedisStore(redis_server.url, timeout_ms=100), "t-recover", retry_interval_s=0.2)
    assert store.mget(["k"]) == [None]
    assert not store.is_up
    redis_server.start()
    time.sleep(0.25)
    store.mset([("k", b"v")])
    assert store.is_up
    assert _up("t-recover") == 1
    assert store.mget(["k"]) == [b"v"]


def test_redis_dying_mid_run_degrades_then_recovers(redis_factory: Callable[..., RedisServer]) -> None:
    redis_server = redis_factory()
    store = FailSoftStore(RedisStore(redis_server.url, timeout_ms=100), "t-midrun", retry_interval_s=0.2)
    store.mset([("k", b"v")])
    assert store.mget(["k"]) == [b"v"]
    redis_server.stop()
    assert store.mget(["k"]) == [None]
    assert not store.ping()
    redis_server.start()  # same port, empty data
    time.sleep(0.25)
    assert store.ping()
    store.mset([("k", b"again")])
    assert store.mget(["k"]) == [b"again"]
