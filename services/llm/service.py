"""LLM: one vLLM engine, served by vLLM's own OpenAI server in its own process.

Why a process and not vLLM's app mounted in the BentoML worker: measured on an H200 (NOTES.md),
the in-process app shares BentoML's event loop and loses 25% of output throughput at saturation,
while ``__command__`` + proxy matched raw ``vllm serve``. So BentoML's ``__command__`` starts the
engine on a loopback port; the generation routes pass the response cache (services/llm/proxy.py);
every other OpenAI route is proxied by BentoML untouched; ``/metrics`` appends vLLM's ``vllm:*``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from http import HTTPStatus

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException

from services.cache.store import open_store
from services.llm.engine import engine_command, served_model_name, store_tag
from services.llm.proxy import EngineProxy, EngineRequestError, EngineUnavailable, create_app
from services.llm.response_cache import CACHE_NAME, ResponseCache
from services.llm.schemas import MaxTokens, Prompt, Temperature, TopP
from services.llm.semantic import SemanticIndex
from services.settings import get_settings
from services.streaming import mark_streaming

SETTINGS = get_settings()
CONFIG = SETTINGS.llm
ENGINE_URL = f"http://127.0.0.1:{CONFIG.engine_port}"
MODEL_TAG = store_tag(CONFIG.model)
STREAMING_ROUTES = ("/v1/completions", "/v1/chat/completions", "/generate")


def _current_proxy() -> EngineProxy:
    return bentoml.get_current_service().proxy  # type: ignore[no-any-return]


def _response_cache() -> ResponseCache:
    return ResponseCache(open_store(SETTINGS.cache, cache=CACHE_NAME))


@bentoml.asgi_app(create_app(_current_proxy), path="/", name="llm-cache")
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
        self.model_name = served_model_name(CONFIG)
        semantic = SemanticIndex(CONFIG.semantic_threshold, CONFIG.semantic_max_entries)
        self.proxy = EngineProxy(
            ENGINE_URL,
            _response_cache if CONFIG.response_cache else None,
            semantic if CONFIG.semantic_cache else None,
            self._embed_prompt if CONFIG.semantic_cache else None,
        )

    async def _embed_prompt(self, text: str) -> np.ndarray:
        reply = await self.embeddings.to_async.embed(texts=[text], normalize=True)
        return np.asarray(reply.embeddings[0], dtype=np.float32)

    def __command__(self) -> list[str]:
        return engine_command(CONFIG)

    async def __metrics__(self, content: str) -> str:
        """BentoML's series plus the engine's ``vllm:*`` families (its process metrics would clash)."""
        try:
            async with self.proxy.session.get(f"{ENGINE_URL}/metrics") as response:
                engine = await response.text()
        except Exception:  # engine restarting: serve our own series rather than fail the scrape
            return content
        lines = [
            line for line in engine.splitlines() if line.startswith(("vllm:", "# HELP vllm:", "# TYPE vllm:"))
        ]
        return content + "\n".join(lines) + "\n"

    @bentoml.on_shutdown
    async def _close(self) -> None:
        await self.proxy.close()

    @bentoml.api
    async def generate(
        self,
        prompt: Prompt,
        max_tokens: MaxTokens = 128,
        temperature: Temperature = 0.0,
        top_p: TopP = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Stream the completion of ``prompt`` as text pieces (deterministic by default, so cached)."""
        payload = {"model": self.model_name, "prompt": prompt, "max_tokens": max_tokens,
                   "temperature": temperature, "top_p": top_p, "seed": seed, "stop": stop}  # fmt: skip
        pieces = self.proxy.completion_text({k: v for k, v in payload.items() if v is not None})
        try:
            # Start the request before answering: engine errors become HTTP errors, not a broken stream.
            first = await anext(pieces, None)
        except EngineRequestError as exc:
            raise BentoMLException(str(exc), error_code=HTTPStatus(exc.status)) from None
        except EngineUnavailable as exc:
            raise BentoMLException(str(exc), error_code=HTTPStatus.SERVICE_UNAVAILABLE) from None
        return _prepend(first, pieces)


mark_streaming(LLM, "generate")


async def _prepend(first: str | None, rest: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    if first is not None:
        yield first
    async for piece in rest:
        yield piece
