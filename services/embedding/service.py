"""EmbeddingCache: sentence-transformers embeddings, computed once.

``embed`` (and OpenAI's ``POST /v1/embeddings``, services/embedding/openai_api.py) answers hits from the
store without touching the model; misses go to the batchable ``encode`` through ``self.to_async.encode``
(under ``bentoml serve``, BentoML's in-process JSON self-call, which passes the batching dispatcher), so
misses of concurrent requests share model calls. New vectors are written by the store's writer thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import cast

import bentoml
import numpy as np
from starlette.applications import Starlette

from services import metrics
from services.bentoml_adapter import fix_bentoml
from services.cache.keys import embedding_namespace
from services.cache.store import open_store
from services.cache.write_behind import WriteBehindStore
from services.embedding.lookup import CachedEmbedder, normalized
from services.embedding.model import load_sentence_model
from services.embedding.openai_api import embeddings_route
from services.embedding.schemas import EmbedResponse, EncodingFormat, Texts
from services.request_id import with_request_ids
from services.settings import get_settings
from services.wire import from_base64, to_base64

fix_bentoml()
SETTINGS = get_settings()
CONFIG = SETTINGS.embedding


def _current() -> EmbeddingCache:
    return bentoml.get_current_service()  # type: ignore[no-any-return]


OPENAI_APP = Starlette(routes=[embeddings_route(_current, CONFIG.max_texts, CONFIG.max_text_chars)])


@bentoml.asgi_app(OPENAI_APP, path="/", name="openai-embeddings")
@bentoml.service(
    name="embedding_cache",
    workers=CONFIG.workers,
    # A cuda device needs a GPU where the service is placed (BentoCloud, or BentoML's GPU allocator).
    resources={"gpu": 1} if CONFIG.device.startswith("cuda") else {"cpu": "2"},
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    # Callers reach this service through BentoML's service client; see docs/ARCHITECTURE.md.
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)
class EmbeddingCache:
    """Embeddings for texts: cache first, adaptive batching for the misses."""

    def __init__(self) -> None:
        self.model_id = CONFIG.model_id
        self.model = load_sentence_model(CONFIG.model_id, CONFIG.device)
        self.dimension = int(self.model.get_embedding_dimension() or 0)
        self.store = WriteBehindStore(open_store(SETTINGS.cache, cache="embedding"))
        self.embedder = CachedEmbedder(
            self.store, embedding_namespace(self.model_id), self.dimension, CONFIG.max_batch_size
        )
        self._model_lock = threading.Lock()  # one model call at a time, whichever path it came by

    @bentoml.on_shutdown
    def _flush(self) -> None:
        self.store.close()

    async def embed_texts(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Vectors of ``texts`` in order, and how many came from the cache."""
        return await self.embedder.embed(texts, self._encode_misses)

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads (special tokens included, cut at its maximum length), for ``usage``."""
        encoded = self.model.tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    @bentoml.api
    async def embed(
        self, texts: Texts, normalize: bool = False, encoding_format: EncodingFormat = "float"
    ) -> EmbedResponse:
        """Embed 1..max_texts texts; ``normalize`` scales each vector to unit length."""
        vectors, hits = await self.embed_texts(texts)
        if normalize:
            vectors = normalized(vectors)
        embeddings = to_base64(vectors) if encoding_format == "base64" else vectors.tolist()
        return EmbedResponse(
            model=self.model_id,
            dimension=self.dimension,
            embeddings=cast(list[list[float] | str], embeddings),  # a list is invariant: no copy to widen it
            cache_hits=hits,
        )

    @bentoml.api
    def info(self) -> dict[str, object]:
        """Model, dimension, store backend and whether it answers: the readiness view."""
        return {
            "model": self.model_id,
            "dimension": self.dimension,
            "cache_backend": self.store.backend,
            "cache_backend_up": self.store.ping(),
        }

    @bentoml.api(batchable=True, max_batch_size=CONFIG.max_batch_size, max_latency_ms=CONFIG.max_latency_ms)
    def encode(self, texts: list[str]) -> list[str]:
        """The batched model call: one base64 float32 vector per text. Misses reach it through
        BentoML's JSON self-call, where 384 floats per text as JSON numbers cost more than the GPU."""
        return to_base64(self._run_model(texts))

    async def _encode_misses(self, texts: list[str]) -> np.ndarray:
        """A chunk that is already a full batch goes straight to the model: batching cannot improve
        it, and the self-call costs ~50 ms per 64 vectors (JSON both ways, and BentoML 1.4's
        dispatcher counts requests, not texts, so it holds a lone full chunk back after a burst).
        Partial chunks go through adaptive batching, where they can share a model call."""
        if len(texts) >= CONFIG.max_batch_size:
            return await asyncio.to_thread(self._run_model, texts)
        return from_base64(await self.to_async.encode(texts))  # type: ignore[attr-defined]

    def _run_model(self, texts: list[str]) -> np.ndarray:
        with self._model_lock:
            started = time.perf_counter()
            vectors = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True)
        metrics.EMBEDDING_MODEL_SECONDS.observe(time.perf_counter() - started)
        metrics.EMBEDDING_BATCH_SIZE.observe(len(texts))
        return vectors.astype(np.float32, copy=False)


with_request_ids(EmbeddingCache)
