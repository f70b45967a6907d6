"""Cache writes off the request path: a store wrapper whose writes a background thread commits.

A response-cache write is one SQLite commit (and, every ~1,000 pages, a WAL checkpoint with an fsync)
or one Redis round trip. Done inline it ran on the event loop that relays every other stream, so each
cacheable miss delayed every stream in flight. Here ``mset`` only queues; one thread per store commits
in batches. Lookups see queued values (read-your-writes within the process), so a client repeating a
request at once still hits. The queue is bounded: past ``max_pending`` entries a write is dropped and
counted (a cache may forget; it must not grow without bound or block a request). ``flush`` waits for
the queue to drain, for a graceful stop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from langchain_core.stores import ByteStore as LangChainByteStore

from services import metrics
from services.cache.store import FailSoftStore


class WriteBehindStore(LangChainByteStore):
    def __init__(self, inner: FailSoftStore, max_pending: int = 4096, batch_size: int = 256) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.cache = inner.cache
        self.max_pending = max_pending
        self.batch_size = batch_size
        self._pending: dict[str, bytes] = {}  # queued, not yet committed; insertion order = write order
        self._lock = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=f"cache-writer-{self.cache}", daemon=True)
        self._thread.start()

    # --- the ByteStore surface --------------------------------------------------------------------
    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            queued = [self._pending.get(k) for k in keys]
        missing = [k for k, v in zip(keys, queued, strict=True) if v is None]
        found = dict(zip(missing, self.inner.mget(missing), strict=True)) if missing else {}
        return [v if v is not None else found[k] for k, v in zip(keys, queued, strict=True)]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        dropped = 0
        with self._lock:
            for key, value in key_value_pairs:
                if key not in self._pending and len(self._pending) >= self.max_pending:
                    dropped += 1
                    continue
                self._pending.pop(key, None)  # a newer value moves to the end of the queue
                self._pending[key] = value
            self._lock.notify()
        if dropped:
            metrics.CACHE_WRITES_DROPPED.labels(self.cache).inc(dropped)

    def mdelete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._pending.pop(key, None)
        self.inner.mdelete(keys)

    # --- claims go straight to the backend: a claim is only worth anything once every process sees it ---
    def claim(self, key: str, ttl_s: float) -> bool:
        return self.inner.claim(key, ttl_s)

    def extend(self, key: str, ttl_s: float) -> None:
        self.inner.extend(key, ttl_s)

    def is_claimed(self, key: str) -> bool:
        return self.inner.is_claimed(key)

    def release(self, key: str) -> None:
        self.inner.release(key)

    def committed(self, key: str, timeout_s: float = 10.0) -> bool:
        """Wait until ``key``'s queued write is committed (or dropped); False on timeout. Other processes
        can read it from then on."""
        with self._lock:
            return self._lock.wait_for(lambda: key not in self._pending, timeout_s)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        self.flush()
        return self.inner.yield_keys(prefix=prefix)

    def ping(self) -> bool:
        return self.inner.ping()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # --- the writer -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if not self._pending and self._closed:
                    return
                batch = list(self._pending.items())[: self.batch_size]
                self._busy = True
            try:
                self.inner.mset(batch)  # fail-soft: a backend failure drops the batch, never raises
            finally:
                with self._lock:
                    for key, value in batch:
                        if self._pending.get(key) is value:  # not overwritten meanwhile
                            del self._pending[key]
                    self._busy = False
                    self._lock.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued write is committed (or dropped by a failing backend). True if done."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._busy, timeout_s)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush, then stop the writer. True when nothing was left behind."""
        flushed = self.flush(timeout_s)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout_s)
        return flushed
