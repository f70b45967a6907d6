"""LLM: one vLLM engine, served by vLLM's own OpenAI server in its own process.

Why a process and not vLLM's app mounted in the BentoML worker: measured on an H200
(docs/ARCHITECTURE.md), the in-process app shares BentoML's event loop and loses 25% of output
throughput at saturation, while ``__command__`` + proxy matched raw ``vllm serve``. So BentoML's
``__command__`` starts the engine on a loopback port; the generation routes pass the response cache;
every other route of vLLM's server is relayed (services/llm/routes.py); ``/metrics`` adds ``vllm:*``.
"""

from __future__ import annotations

import bentoml
import numpy as np
from starlette.applications import Starlette

from services.bentoml_adapter import (
    assigned_gpus,
    fix_bentoml,
    gpu_assignment_error,
    mark_streaming,
    stop_server,
    worker_index,
)
from services.gc_tuning import settle_gc_on_start
from services.gpu_metrics import gpu_capability, gpu_count, gpu_exposition, gpu_total_mib
from services.llm.backends import EngineBackend, as_vector, embed_prompt, engine_backend
from services.llm.engine import engine_command, store_tag
from services.llm.generate import generate
from services.llm.routes import llm_routes
from services.llm.supervision import EngineWatch, StartupError, preflight
from services.metrics_exposition import engine_families
from services.relay import dependency_upstream
from services.request_id import with_request_ids
from services.settings import get_settings

fix_bentoml()
SETTINGS = get_settings()
CONFIG = SETTINGS.llm
MODEL_TAG = store_tag(CONFIG.model)
STREAMING_ROUTES = ("/v1/", "/generate")  # tracing: OpenTelemetry opens a span per streamed chunk


def _current_backend() -> EngineBackend:
    return bentoml.get_current_service().llm_backend  # type: ignore[no-any-return]


@bentoml.asgi_app(Starlette(routes=llm_routes(_current_backend)), path="/", name="llm-routes")
@bentoml.service(
    name="llm",
    resources={"gpu": CONFIG.gpus} if CONFIG.request_gpus else {"cpu": "2"},
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    http={"proxy_port": CONFIG.engine_port},
    # BentoML's OpenTelemetry middleware opens a span per streamed chunk even at sample rate 0:
    # ~27% of this worker's CPU per token (py-spy). The streaming routes skip it.
    tracing={"excluded_urls": list(STREAMING_ROUTES)},
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
    **({"workers": CONFIG.workers} if CONFIG.workers else {}),
)
class LLM:
    """vLLM's OpenAI API plus a typed streaming API, both through the response cache."""

    if MODEL_TAG is not None:  # declared, so `bentoml build` packs the model into the Bento
        model_ref = bentoml.models.BentoModel(MODEL_TAG)

    if CONFIG.semantic_cache:  # the dependency exists only when it is used
        from services.embedding.service import EmbeddingCache

        embeddings = bentoml.depends(EmbeddingCache)

    def __init__(self) -> None:
        try:
            if reason := gpu_assignment_error("llm", gpu_count):
                raise StartupError(reason)
            preflight(CONFIG, gpu_total_mib(assigned_gpus()), gpu_capability(assigned_gpus()))
        except StartupError as exc:
            stop_server(str(exc))
            raise
        self.llm_backend = engine_backend(SETTINGS, self._embed_prompt if CONFIG.semantic_cache else None)
        # The embedding service for the semantic cache, through the relay (None: use BentoML's client).
        self._embeddings = dependency_upstream("embedding_cache") if CONFIG.semantic_cache else None
        # BentoML starts the engine in the first worker only: that worker restarts it when it dies.
        self.engine_watch = EngineWatch(self.llm_backend.engines, owns_engine=worker_index() == 1)

    async def _embed_prompt(self, text: str) -> np.ndarray:
        if self._embeddings is None:
            return as_vector(await self.embeddings.to_async.embed(texts=[text], normalize=True))
        return await embed_prompt(self._embeddings, text)

    def __command__(self) -> list[str]:
        return engine_command(CONFIG)

    async def __metrics__(self, content: str) -> str:
        """BentoML's series, the engine's ``vllm:*`` families and the gauges of this service's GPUs:
        three sets of families with no name in common, so they are joined as text, not parsed."""
        return content + await engine_families(self.llm_backend.engines) + gpu_exposition(assigned_gpus())

    _settle_gc = bentoml.on_startup(settle_gc_on_start)

    @bentoml.on_startup
    def _watch_engine(self) -> None:
        self.engine_watch.start()

    async def __is_ready__(self) -> bool:
        """Ready while the engine answers its /health (the gateway's /readyz follows)."""
        return self.engine_watch.healthy or bool(await self.engine_watch.check())

    @bentoml.on_shutdown
    async def _close(self) -> None:
        await self.llm_backend.close()
        if self._embeddings is not None:
            await self._embeddings.close()

    generate = bentoml.api(generate)  # services/llm/generate.py, shared with the gateway


mark_streaming(LLM, "generate")
with_request_ids(LLM)
