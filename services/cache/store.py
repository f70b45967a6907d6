"""The byte-store Protocol every cache backend implements, and the fail-soft wrapper around it.

Backends are LangChain ``ByteStore`` subclasses too, so a LangChain app can hand them to
``CacheBackedEmbeddings`` or any other LangChain cache. The services only need the Protocol below.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar, cast, runtime_checkable

from langchain_core.stores import ByteStore as LangChainByteStore

from services import metrics
from services.settings import CacheSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


@runtime_checkable
class ByteStore(Protocol):
    """A key -> bytes map with batch operations; implementations raise on backend failure."""

    backend: str

    def mget(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None: ...

    def mdelete(self, keys: Sequence[str]) -> None: ...


@runtime_checkable
class ClaimStore(Protocol):
    """Short-lived, expiring ownership of a key, seen by every process that shares the store: how the
    workers (or replicas, over Redis) of the LLM proxy agree who generates an answer they all want."""

    def claim(self, key: str, ttl_s: float) -> bool:
        """Take ``key`` for ``ttl_s`` unless someone holds it; True when taken."""
        ...

    def extend(self, key: str, ttl_s: float) -> None:
        """The holder keeps its claim alive ``ttl_s`` longer."""
        ...

    def is_claimed(self, key: str) -> bool: ...

    def release(self, key: str) -> None: ...


class FailSoftStore(LangChainByteStore):
    """Turns backend failures into cache misses and dropped writes, and retries the backend later.

    A failed call marks the backend down (metric + one warning log); while down, calls skip it
    entirely, so a dead Redis costs nothing per request. After ``retry_interval_s`` the next call
    tries again and, on success, the backend is up again: recovery needs no restart.
    """

    def __init__(self, inner: ByteStore, cache: str, retry_interval_s: float) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.cache = cache
        self.retry_interval_s = retry_interval_s
        self._down_until = 0.0
        self._lock = threading.Lock()
        metrics.CACHE_BACKEND_UP.labels(cache, self.backend).set(1)

    @property
    def is_up(self) -> bool:
        return self._down_until == 0.0

    def _skip(self) -> bool:
        return self._down_until > time.monotonic()

    def mark_down(self, op: str, exc: Exception) -> None:
        """Serve without the backend from now on (until a retry succeeds); one log line."""
        self._failed(op, exc)

    def _failed(self, op: str, exc: Exception) -> None:
        metrics.CACHE_BACKEND_ERRORS.labels(self.cache, self.backend, op).inc()
        with self._lock:
            if self.is_up:
                log.warning(
                    "cache %s: %s backend failed (%s: %s); serving without it",
                    self.cache,
                    self.backend,
                    type(exc).__name__,
                    exc,
                )
            self._down_until = time.monotonic() + self.retry_interval_s
        metrics.CACHE_BACKEND_UP.labels(self.cache, self.backend).set(0)

    def _succeeded(self) -> None:
        if not self.is_up:
            with self._lock:
                self._down_until = 0.0
            log.warning("cache %s: %s backend is back", self.cache, self.backend)
            metrics.CACHE_BACKEND_UP.labels(self.cache, self.backend).set(1)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys or self._skip():
            return [None] * len(keys)
        try:
            values = self.inner.mget(keys)
        except Exception as exc:  # any backend failure degrades to a miss, never to an error
            self._failed("get", exc)
            return [None] * len(keys)
        self._succeeded()
        return values

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        if not key_value_pairs or self._skip():
            return
        try:
            self.inner.mset(key_value_pairs)
        except Exception as exc:
            self._failed("set", exc)
            return
        self._succeeded()

    def mdelete(self, keys: Sequence[str]) -> None:
        if keys and not self._skip():
            try:
                self.inner.mdelete(keys)
            except Exception as exc:
                self._failed("delete", exc)

    # --- claims: with the backend down, every process generates for itself (no one waits on a claim) ---
    def claim(self, key: str, ttl_s: float) -> bool:
        return self._attempt("claim", True, lambda claims: claims.claim(key, ttl_s))

    def extend(self, key: str, ttl_s: float) -> None:
        self._attempt("claim", None, lambda claims: claims.extend(key, ttl_s))

    def is_claimed(self, key: str) -> bool:
        return self._attempt("claim", False, lambda claims: claims.is_claimed(key))

    def release(self, key: str) -> None:
        self._attempt("claim", None, lambda claims: claims.release(key))

    def _attempt(self, op: str, fallback: T, call: Callable[[ClaimStore], T]) -> T:
        if self._skip():
            return fallback
        try:
            value = call(cast(ClaimStore, self.inner))
        except Exception as exc:
            self._failed(op, exc)
            return fallback
        self._succeeded()
        return value

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        keys: Iterator[str] = self.inner.yield_keys(prefix=prefix)  # type: ignore[attr-defined]
        return keys

    def ping(self) -> bool:
        """Readiness probe: True when the backend answers now."""
        try:
            self.inner.mget(["__ping__"])
        except Exception as exc:
            self._failed("ping", exc)
            return False
        self._succeeded()
        return True


class Unopened:
    """A backend that could not be opened (a read-only or missing directory...): every call fails with
    the reason, so the fail-soft wrapper serves without it and retries now and then."""

    def __init__(self, backend: str, reason: Exception) -> None:
        self.backend = backend
        self.reason = reason

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        raise self.reason

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        raise self.reason

    def mdelete(self, keys: Sequence[str]) -> None:
        raise self.reason

    def claim(self, key: str, ttl_s: float) -> bool:
        raise self.reason

    def extend(self, key: str, ttl_s: float) -> None:
        raise self.reason

    def is_claimed(self, key: str) -> bool:
        raise self.reason

    def release(self, key: str) -> None:
        raise self.reason


def _backend(settings: CacheSettings) -> ByteStore:
    if settings.backend == "redis":
        from services.cache.redis_store import RedisStore

        return RedisStore(settings.redis_url, timeout_ms=settings.redis_timeout_ms, ttl_s=settings.ttl_s)
    from services.cache.disk import SqliteStore

    return SqliteStore(settings.resolved_disk_path())


def open_store(settings: CacheSettings, cache: str) -> FailSoftStore:
    """The configured backend, wrapped fail-soft. ``cache`` names the user (for metrics labels).
    Services wrap it in ``WriteBehindStore`` (services/cache/write_behind.py) to write off the request path.
    A backend that cannot even be opened is served without (one log line, the backend-up gauge at 0)."""
    try:
        inner = _backend(settings)
    except Exception as exc:  # a read-only or full directory, a bad path...: never a failed start-up
        inner = Unopened(settings.backend, exc)
    store = FailSoftStore(inner, cache=cache, retry_interval_s=settings.redis_retry_interval_s)
    if isinstance(inner, Unopened):
        store.mark_down("open", inner.reason)
    return store
