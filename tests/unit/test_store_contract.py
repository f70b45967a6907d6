"""One contract, every backend: the embedded SQLite store, Redis, both behind FailSoftStore, and the
write-behind wrapper the services use (its queued writes must read back at once)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from scripts.procs import RedisServer
from services.cache.disk import SqliteStore
from services.cache.redis_store import RedisStore
from services.cache.store import ByteStore, ClaimStore, FailSoftStore
from services.cache.write_behind import WriteBehindStore


@pytest.fixture(
    params=["disk", "redis", "failsoft-disk", "failsoft-redis", "write-behind-disk", "write-behind-redis"]
)
def store(request: pytest.FixtureRequest, tmp_path: Path, shared_redis: RedisServer) -> ByteStore:
    kind: str = request.param
    inner: ByteStore
    if kind.endswith("disk"):
        inner = SqliteStore(tmp_path / "kv.sqlite3")
    else:
        inner = RedisStore(shared_redis.url)
        inner.client.flushdb()  # type: ignore[attr-defined]
    if kind.startswith("write-behind"):
        return WriteBehindStore(FailSoftStore(inner, cache="test", retry_interval_s=1.0))
    return FailSoftStore(inner, cache="test", retry_interval_s=1.0) if kind.startswith("failsoft") else inner


def test_missing_keys_read_as_none(store: ByteStore) -> None:
    assert store.mget(["nope", "also-nope"]) == [None, None]


def test_values_round_trip_in_request_order(store: ByteStore) -> None:
    store.mset([("a", b"1"), ("b", b"\x00\xff"), ("c", b"")])
    assert store.mget(["c", "missing", "a", "b"]) == [b"", None, b"1", b"\x00\xff"]


def test_set_overwrites_and_delete_removes(store: ByteStore) -> None:
    store.mset([("k", b"old")])
    store.mset([("k", b"new")])
    assert store.mget(["k"]) == [b"new"]
    store.mdelete(["k"])
    assert store.mget(["k"]) == [None]


def test_large_batches_work(store: ByteStore) -> None:
    items = [(f"key-{i}", str(i).encode()) for i in range(2500)]
    store.mset(items)
    assert store.mget([k for k, _ in items]) == [v for _, v in items]


def test_keys_can_be_listed_by_prefix(store: ByteStore) -> None:
    store.mset([("ns1:a", b"1"), ("ns1:b", b"2"), ("ns2:a", b"3")])
    assert sorted(store.yield_keys(prefix="ns1:")) == ["ns1:a", "ns1:b"]  # type: ignore[attr-defined]


def test_a_claim_is_held_once_until_released(store: ByteStore) -> None:
    claims = cast(ClaimStore, store)
    assert claims.claim("claim:k", 10) and claims.is_claimed("claim:k")
    assert not claims.claim("claim:k", 10)  # another process asking: no
    claims.release("claim:k")
    assert not claims.is_claimed("claim:k")
    assert claims.claim("claim:k", 10)


def test_a_claim_not_extended_expires(store: ByteStore) -> None:
    claims = cast(ClaimStore, store)
    assert claims.claim("claim:short", 0.2) and claims.claim("claim:kept", 0.2)
    claims.extend("claim:kept", 10)
    time.sleep(0.3)
    assert not claims.is_claimed("claim:short") and claims.is_claimed("claim:kept")
    assert claims.claim("claim:short", 10) and not claims.claim("claim:kept", 10)


def test_claims_are_seen_by_every_process_sharing_the_file(tmp_path: Path) -> None:
    """Two stores on one file (as two worker processes open it) agree who holds a claim."""
    first, second = SqliteStore(tmp_path / "kv.sqlite3"), SqliteStore(tmp_path / "kv.sqlite3")
    assert first.claim("claim:k", 10) and not second.claim("claim:k", 10) and second.is_claimed("claim:k")
    first.release("claim:k")
    assert second.claim("claim:k", 10)


def test_disk_store_survives_reopening(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "kv.sqlite3").mset([("k", b"v")])
    assert SqliteStore(tmp_path / "kv.sqlite3").mget(["k"]) == [b"v"]


def test_stores_plug_into_langchain_cache_backed_embeddings(tmp_path: Path) -> None:
    """Our stores are LangChain ByteStores: CacheBackedEmbeddings can use them as they are."""
    from langchain_classic.embeddings import CacheBackedEmbeddings
    from langchain_core.embeddings import DeterministicFakeEmbedding

    calls: list[list[str]] = []

    class Counting(DeterministicFakeEmbedding):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            calls.append(texts)
            return super().embed_documents(texts)

    cached = CacheBackedEmbeddings.from_bytes_store(
        Counting(size=4), SqliteStore(tmp_path / "lc.sqlite3"), namespace="m", key_encoder="blake2b"
    )
    first = cached.embed_documents(["x", "y"])
    second = cached.embed_documents(["x", "y"])
    assert first == second
    assert calls == [["x", "y"]]
