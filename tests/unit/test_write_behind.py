"""Cache writes leave the request path: queued, read back at once, committed by one thread, bounded."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import REGISTRY

from scripts.procs import free_port
from services.cache.disk import SqliteStore
from services.cache.redis_store import RedisStore
from services.cache.store import FailSoftStore
from services.cache.write_behind import WriteBehindStore


class GatedStore(SqliteStore):
    """A real SQLite store whose writes wait until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(len(key_value_pairs))
        super().mset(key_value_pairs)


def dropped(cache: str) -> float:
    return REGISTRY.get_sample_value("infstack_cache_writes_dropped_total", {"cache": cache}) or 0.0


def test_a_queued_write_reads_back_before_it_is_committed(tmp_path: Path) -> None:
    inner = GatedStore(tmp_path / "kv.sqlite3")
    store = WriteBehindStore(FailSoftStore(inner, "wb-read", 1.0))
    store.mset([("k", b"v")])  # returns at once although the backend cannot write yet
    assert store.mget(["k", "other"]) == [b"v", None]
    assert inner.mget(["k"]) == [None]  # not committed yet
    inner.gate.set()
    assert store.flush(5)
    assert inner.mget(["k"]) == [b"v"] and store.pending == 0


def test_writes_queued_together_are_committed_in_one_batch(tmp_path: Path) -> None:
    inner = GatedStore(tmp_path / "kv.sqlite3")
    store = WriteBehindStore(FailSoftStore(inner, "wb-batch", 1.0), batch_size=100)
    store.mset([("first", b"1")])
    assert inner.entered.wait(5)  # the writer took it and waits at the gate
    store.mset([(f"k{i}", b"x") for i in range(50)])
    inner.gate.set()
    assert store.flush(5)
    assert inner.batches == [1, 50]
    assert inner.mget(["k49"]) == [b"x"]


def test_a_full_queue_drops_and_counts_new_writes_but_keeps_overwrites(tmp_path: Path) -> None:
    inner = GatedStore(tmp_path / "kv.sqlite3")
    store = WriteBehindStore(FailSoftStore(inner, "wb-full", 1.0), max_pending=3)
    before = dropped("wb-full")
    store.mset([("a", b"1"), ("b", b"1"), ("c", b"1")])
    store.mset([("d", b"1"), ("e", b"1")])  # no room: dropped, never blocking the caller
    store.mset([("a", b"2")])  # an overwrite of a queued key takes no room
    assert dropped("wb-full") - before == 2
    assert store.mget(["a", "d"]) == [b"2", None]
    inner.gate.set()
    assert store.close(5)
    assert inner.mget(["a", "b", "c", "d"]) == [b"2", b"1", b"1", None]


def test_a_dead_backend_costs_the_writer_not_the_caller() -> None:
    store = WriteBehindStore(
        FailSoftStore(RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=50), "wb-dead", 60)
    )
    store.mset([("k", b"v")])
    assert store.flush(5)  # the failed write was given up by the fail-soft store, nothing raised
    assert store.mget(["k"]) == [None] and not store.inner.is_up
