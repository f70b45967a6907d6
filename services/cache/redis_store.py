"""The shared store for replicas: Redis, with short timeouts and no client-side retries.

Retries are the fail-soft wrapper's job (``services.cache.store.FailSoftStore``): redis-py's own
retry loop would multiply a dead server's timeout on every request.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import redis
from langchain_core.stores import ByteStore as LangChainByteStore
from redis.backoff import NoBackoff
from redis.retry import Retry


class RedisStore(LangChainByteStore):
    backend = "redis"

    def __init__(self, url: str, timeout_ms: int = 250, ttl_s: int | None = None) -> None:
        self.ttl_s = ttl_s
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_ms / 1000,
            socket_connect_timeout=timeout_ms / 1000,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return [v if v is None or isinstance(v, bytes) else v.encode() for v in self.client.mget(keys)]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, value in key_value_pairs:
            pipe.set(key, value, ex=self.ttl_s)
        pipe.execute()

    def mdelete(self, keys: Sequence[str]) -> None:
        if keys:
            self.client.delete(*keys)

    # --- claims (services/cache/store.py ClaimStore): Redis expires them itself -----------------------
    def claim(self, key: str, ttl_s: float) -> bool:
        return bool(self.client.set(key, b"1", nx=True, px=max(1, int(ttl_s * 1000))))

    def extend(self, key: str, ttl_s: float) -> None:
        self.client.set(key, b"1", px=max(1, int(ttl_s * 1000)))

    def is_claimed(self, key: str) -> bool:
        return bool(self.client.exists(key))

    def release(self, key: str) -> None:
        self.client.delete(key)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        for key in self.client.scan_iter(match=f"{prefix}*" if prefix else None):
            yield key.decode() if isinstance(key, bytes) else key
