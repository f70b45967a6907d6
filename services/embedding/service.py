"""EmbeddingCache: sentence-transformers embeddings, computed once.

``embed`` (and OpenAI's ``POST /v1/embeddings``, services/embedding/openai_api.py) answers hits from the
store without touching the model; misses of concurrent requests share model calls through the service's
text batcher (services/embedding/batcher.py). New vectors are written by the store's writer thread.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import cast

import bentoml
import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from services import metrics
from services.bentoml_adapter import dependency_url, fix_bentoml, gpu_assignment_error, stop_server
from services.cache.keys import embedding_namespace
from services.cache.store import open_store
from services.cache.write_behind import WriteBehindStore
from services.embedding.batcher import TextBatcher
from services.embedding.cuda_graphs import graphed_or_eager
from services.embedding.lookup import CachedEmbedder, Overloaded, normalized
from services.embedding.model import (
    TokenCounter,
    encode_batch,
    length_groups,
    load_sentence_model,
    max_tokens,
    shares_cores_with_engine,
)
from services.embedding.onnx_pass import onnx_or_torch
from services.embedding.openai_api import embeddings_route
from services.embedding.schemas import EmbedResponse, EncodingFormat, Texts
from services.gc_tuning import settle_gc_on_start
from services.gpu_metrics import gpu_count
from services.request_id import with_request_ids
from services.settings import get_settings
from services.wire import RETRY_AFTER_S, to_base64

fix_bentoml()
SETTINGS = get_settings()
CONFIG = SETTINGS.embedding


def _current() -> EmbeddingCache:
    return bentoml.get_current_service()  # type: ignore[no-any-return]


CHARS_PER_TOKEN = 4  # English averages ~4 characters per token: where a text's length is cut by the model
OPENAI_APP = Starlette(routes=[embeddings_route(_current, CONFIG.max_texts, CONFIG.max_text_chars)])


@bentoml.asgi_app(OPENAI_APP, path="/", name="openai-embeddings")
@bentoml.service(
    name="embedding_cache",
    workers=CONFIG.workers,
    # "cuda" claims a GPU of its own (BentoCloud, or BentoML's GPU allocator); "cuda:N" names a GPU to
    # share with the LLM service without a claim (a 1-GPU machine has no second GPU to claim).
    resources={"gpu": 1} if CONFIG.device == "cuda" else {"cpu": "2"},
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    # Callers reach this service through BentoML's service client; see docs/ARCHITECTURE.md.
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)
class EmbeddingCache:
    """Embeddings for texts: cache first, adaptive batching for the misses."""

    def __init__(self) -> None:
        if reason := gpu_assignment_error("embedding_cache", gpu_count):
            stop_server(reason)
            raise RuntimeError(reason)
        self.model_id = CONFIG.model_id
        beside_engine = shares_cores_with_engine(dependency_url("llm"), gpu_count())
        self.model = load_sentence_model(CONFIG.model_id, CONFIG.device, beside_cpu_engine=beside_engine)
        self.dimension = int(self.model.get_embedding_dimension() or 0)
        graphed = (
            graphed_or_eager(self.model, CONFIG.max_batch_size, CONFIG.cuda_graph_max_cell_tokens)
            if CONFIG.uses_cuda_graphs()
            else None
        )
        self.cuda_graphs = graphed.graph_count if graphed else 0
        try:
            onnx = (
                onnx_or_torch(
                    self.model, spin=CONFIG.onnx_spins(beside_engine), required=CONFIG.runtime == "onnx"
                )
                if CONFIG.uses_onnx()
                else None
            )
        except RuntimeError as exc:  # asked for onnx: a worker restarted would fail the same way forever
            stop_server(str(exc))
            raise
        self.runtime = "onnx" if onnx else "torch"
        self.encode_pass = (
            graphed.encode if graphed else onnx.encode if onnx else partial(encode_batch, self.model)
        )
        self.token_counter = TokenCounter(self.model)
        self.store = WriteBehindStore(open_store(SETTINGS.cache, cache="embedding"))
        self.embedder = CachedEmbedder(
            self.store, embedding_namespace(self.model_id), self.dimension, CONFIG.max_batch_size
        )
        self.batcher = TextBatcher(
            self._run_model,
            CONFIG.max_batch_size,
            CONFIG.max_latency_ms,
            CONFIG.effective_batches_in_flight(),
        )
        if CONFIG.gil_switch_interval_ms is not None:
            sys.setswitchinterval(CONFIG.gil_switch_interval_ms / 1000)
        self.max_padded_chars = CONFIG.padded_chars_per_pass()
        self.longest_chars = CHARS_PER_TOKEN * max_tokens(self.model)  # where it truncates

    _settle_gc = bentoml.on_startup(settle_gc_on_start)

    @bentoml.on_shutdown
    def _flush(self) -> None:
        self.batcher.close()
        self.store.close()

    async def embed_texts(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Vectors of ``texts`` in order, and how many came from the cache."""
        return await self.embedder.embed(texts, self.batcher.encode)

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads, for ``usage`` (services/embedding/model.py)."""
        return self.token_counter(texts)

    @bentoml.api
    async def embed(
        self, texts: Texts, normalize: bool = False, encoding_format: EncodingFormat = "float"
    ) -> EmbedResponse:
        """Embed 1..max_texts texts; ``normalize`` scales each vector to unit length. A 503 with
        ``Retry-After`` when the batcher cannot encode the misses within ``max_latency_ms``."""
        try:
            vectors, hits = await self.embed_texts(texts)
        except Overloaded as exc:  # BentoML words a raised 5xx as "unexpected error", with a traceback
            exc.record()
            body = {"error": str(exc), "service": "embedding_cache", "max_latency_ms": exc.max_latency_ms}
            refusal = JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
            return cast(EmbedResponse, refusal)  # BentoML sends a returned Response as it is
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
        """Model, dimension, store backend and whether it answers, what runs the pass (torch or onnx) and
        the CUDA graphs captured: the readiness view."""
        return {
            "model": self.model_id,
            "dimension": self.dimension,
            "cache_backend": self.store.backend,
            "cache_backend_up": self.store.ping(),
            "runtime": self.runtime,
            "cuda_graphs": self.cuda_graphs,
        }

    def _run_model(self, texts: list[str]) -> np.ndarray:
        """One model call, on one of the batcher's threads (``batches_in_flight`` of them): a pass per
        group of similar lengths (``length_groups``), vectors back in the texts' order."""
        started = time.perf_counter()
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for group in length_groups(texts, self.max_padded_chars, self.longest_chars):
            vectors[group] = self.encode_pass([texts[i] for i in group])
        metrics.EMBEDDING_MODEL_SECONDS.observe(time.perf_counter() - started)
        metrics.EMBEDDING_BATCH_SIZE.observe(len(texts))
        return vectors


with_request_ids(EmbeddingCache)
