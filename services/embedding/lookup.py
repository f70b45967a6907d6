"""Cache-first embedding: look every text up, compute only the distinct misses, write them back.

The semantics are LangChain ``CacheBackedEmbeddings``'s (namespace per model, hashed text keys,
misses computed by the underlying model and stored), with float32 values instead of JSON and a
batched, async ``encode`` so misses can go through BentoML's adaptive batching. Kept free of
BentoML so it is unit-testable with any encoder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from services import metrics
from services.cache.codec import decode_vector, encode_vector
from services.cache.keys import embedding_key
from services.cache.store import ByteStore

Encoder = Callable[[list[str]], Awaitable[np.ndarray]]
SERVICE = "embedding_cache"
log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The batcher refused to encode misses within its latency bound: the request gets a 503 that names
    this service and the bound (never BentoML's "unexpected error"), and the log one line."""

    def __init__(self, max_latency_ms: int, texts: int) -> None:
        super().__init__(
            f"overloaded: the {SERVICE} service cannot encode {texts} uncached texts within "
            f"max_latency_ms={max_latency_ms} at the current load; retry later"
        )
        self.max_latency_ms = max_latency_ms
        self.texts = texts

    def record(self) -> None:
        """One log line and one count per refused request (no traceback: this is load, not a bug)."""
        metrics.EMBEDDING_OVERLOADED.inc()
        log.warning("refused a request: %s", self)


class CachedEmbedder:
    def __init__(self, store: ByteStore, namespace: str, dimension: int, max_batch_size: int) -> None:
        self.store = store
        self.namespace = namespace
        self.dimension = dimension
        self.max_batch_size = max_batch_size

    def lookup(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors (None for a miss). A corrupt or wrong-sized entry counts as a miss."""
        started = time.perf_counter()
        blobs = self.store.mget([embedding_key(self.namespace, t) for t in texts])
        metrics.CACHE_LOOKUP_SECONDS.labels("embedding").observe(time.perf_counter() - started)
        vectors: list[np.ndarray | None] = []
        hits = corrupt = 0
        for blob in blobs:
            vector = decode_vector(blob)
            if vector is not None and vector.shape[0] != self.dimension:
                vector = None
            if vector is None and blob is not None:
                corrupt += 1
            hits += vector is not None
            vectors.append(vector)
        misses = len(texts) - hits
        for result, count in (("hit", hits), ("miss", misses - corrupt), ("corrupt", corrupt)):
            if count:
                metrics.CACHE_LOOKUPS.labels("embedding", result).inc(count)
        return vectors

    async def embed(self, texts: Sequence[str], encode: Encoder) -> tuple[np.ndarray, int]:
        """All vectors in request order, and how many came from the cache."""
        vectors = self.lookup(texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, vectors, strict=True) if v is None))
        hits = sum(v is not None for v in vectors)
        metrics.EMBEDDING_TEXTS.labels("cache").inc(hits)
        if missing:
            computed, failure = await self._compute(missing, encode)
            self.store.mset(  # what was computed is kept even when part of the request failed
                [(embedding_key(self.namespace, t), encode_vector(v)) for t, v in computed.items()]
            )
            if failure is not None:
                raise failure
            vectors = [computed[t] if v is None else v for t, v in zip(texts, vectors, strict=True)]
            metrics.EMBEDDING_TEXTS.labels("model").inc(len(missing))
        return np.stack(vectors).astype(np.float32, copy=False), hits  # type: ignore[arg-type]

    async def _compute(
        self, texts: list[str], encode: Encoder
    ) -> tuple[dict[str, np.ndarray], BaseException | None]:
        """Vectors of the chunks that were computed, and the first failure of the others."""
        # Chunks of at most max_batch_size go out concurrently: the batcher merges them with other
        # requests' misses instead of one large request holding a whole model call.
        chunks = [texts[i : i + self.max_batch_size] for i in range(0, len(texts), self.max_batch_size)]
        results = await asyncio.gather(*(encode(chunk) for chunk in chunks), return_exceptions=True)
        out: dict[str, np.ndarray] = {}
        failure: BaseException | None = None
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            out.update(zip(chunk, np.asarray(result, dtype=np.float32), strict=True))
        return out, failure


def normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit
