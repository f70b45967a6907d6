"""Where LLM traffic goes from a process of the Bento: straight to the vLLM engine, or to the LLM service.

- ``EngineBackend``: this process talks to the engine itself and applies the response cache. The LLM
  service always does; the gateway does when the engine runs on its host (``bentoml serve``, the
  container), which leaves one relay between client and engine, as with the LLM service alone.
- ``ServiceBackend``: this process relays to the LLM service, which applies the cache (the gateway in a
  split deployment, where the engine is another pod's loopback port).

Both answer the OpenAI routes (services/llm/routes.py) and the typed ``generate`` API the same way.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from services.cache.store import open_store
from services.cache.write_behind import WriteBehindStore
from services.llm.proxy import EngineProxy, EngineRequestError, EngineUnavailable
from services.llm.response_cache import CACHE_NAME, ResponseCache
from services.llm.routing import EnginePool
from services.llm.semantic import PromptEmbedder, SemanticIndex
from services.relay import Upstream, UpstreamUnavailable, forward, relay_chunks
from services.request_id import forwarded_request_id
from services.settings import Settings
from services.wire import from_base64, openai_error

GENERATION_ROUTES = ("/v1/completions", "/v1/chat/completions")


class LLMBackend(Protocol):
    async def generation(self, route: str, request: Request) -> Response:
        """One of GENERATION_ROUTES: through the response cache."""

    async def relay(self, path: str, request: Request) -> Response:
        """Any other route of vLLM's server, as is."""

    def completion_text(self, params: dict[str, Any]) -> AsyncIterator[str]:
        """Text pieces of the typed ``generate`` API's completion; raises EngineRequestError or
        EngineUnavailable at the first ``anext`` when the request fails before streaming."""

    async def close(self) -> None: ...


def _unavailable(exc: UpstreamUnavailable) -> Response:
    return openai_error(str(exc), 503)


class EngineBackend:
    def __init__(self, proxy: EngineProxy, model_name: str) -> None:
        self.proxy = proxy
        self.model_name = model_name

    @property
    def engine(self) -> Upstream:
        """The first engine replica (routes other than generations go there)."""
        return self.proxy.engine

    @property
    def engines(self) -> list[Upstream]:
        """Every engine replica, in index order."""
        return self.proxy.engines.upstreams

    async def generation(self, route: str, request: Request) -> Response:
        return await self.proxy.respond(route, request)

    async def relay(self, path: str, request: Request) -> Response:
        return await forward(self.proxy.engine, request, path, _unavailable)

    def completion_text(self, params: dict[str, Any]) -> AsyncIterator[str]:
        return self.proxy.completion_text({"model": self.model_name, **params}, forwarded_request_id())

    async def close(self) -> None:
        await self.proxy.close()


class ServiceBackend:
    def __init__(self, service: Upstream) -> None:
        self.service = service

    async def generation(self, route: str, request: Request) -> Response:
        return await forward(self.service, request, route, _unavailable)

    async def relay(self, path: str, request: Request) -> Response:
        return await forward(self.service, request, path, _unavailable)

    async def completion_text(self, params: dict[str, Any]) -> AsyncIterator[str]:
        body = json.dumps(params).encode()
        try:
            upstream = await self.service.request(
                "POST", "/generate", body, {"content-type": "application/json"}
            )
        except UpstreamUnavailable as exc:
            raise EngineUnavailable(str(exc)) from exc
        if upstream.status != 200:
            detail = await upstream.text()
            upstream.release()
            raise EngineRequestError(upstream.status, _bentoml_error_message(detail))
        decoder = codecs.getincrementaldecoder("utf-8")()
        async for chunk in relay_chunks(upstream):
            if text := decoder.decode(chunk):
                yield text

    async def close(self) -> None:
        await self.service.close()


def engine_backend(
    settings: Settings, embed_prompt: PromptEmbedder | None, hop: str = "llm"
) -> EngineBackend:
    """The cache-aware engine path as the settings describe it (replicas and routing, response cache,
    semantic cache). The engines listen on this host's loopback ports (``LLMSettings.engine_ports``)."""
    config = settings.llm
    replicas = config.data_parallel_size
    names = ["vLLM engine"] if replicas == 1 else [f"vLLM engine replica {i}" for i in range(replicas)]
    engines = EnginePool(
        [
            Upstream(name, f"http://127.0.0.1:{port}")
            for name, port in zip(names, config.engine_ports, strict=True)
        ],
        config.routing,
        config.affinity_prefix_chars,
        config.affinity_load_factor,
    )

    def response_cache() -> ResponseCache:
        return ResponseCache(WriteBehindStore(open_store(settings.cache, cache=CACHE_NAME)))

    semantic = SemanticIndex(config.semantic_threshold, config.semantic_max_entries)
    proxy = EngineProxy(
        engines,
        response_cache if config.response_cache else None,
        semantic if config.semantic_cache and embed_prompt is not None else None,
        embed_prompt if config.semantic_cache else None,
        hop=hop,
        coalesce_across_processes=_coalesce_across_processes(settings, hop),
    )
    return EngineBackend(proxy, config.served_model_name or config.model)


def _coalesce_across_processes(settings: Settings, hop: str) -> bool:
    """Unless set, on when more than one process shares the response cache: several workers of the
    service the proxy runs in, or Redis (replicas)."""
    if settings.llm.coalesce_across_processes is not None:
        return settings.llm.coalesce_across_processes
    workers = settings.gateway.workers if hop == "gateway" else settings.llm.workers or 1
    return workers > 1 or settings.cache.backend == "redis"


def _bentoml_error_message(body: str) -> str:
    """BentoML answers an error as [{"error": message}] (or {"error": ...}); pass the message on,
    not the envelope, or it is wrapped twice."""
    try:
        value = json.loads(body)
        return str((value[0] if isinstance(value, list) else value)["error"])
    except (ValueError, KeyError, TypeError, IndexError):
        return body


async def embed_prompt(embeddings: Upstream, text: str) -> np.ndarray:
    """The unit vector of one prompt from the embedding-cache service's ``/embed`` (base64 float32),
    through the project's relay like every other hop (BentoML's dependency client cost ~50 ms more per
    call on the 2-core CPU)."""
    payload = {"texts": [text], "normalize": True, "encoding_format": "base64"}
    status, answer = await embeddings.post_json("/embed", payload)
    if status != 200:
        raise EngineRequestError(status, f"embedding service: {answer}")
    return np.asarray(from_base64(answer["embeddings"])[0], dtype=np.float32)


def as_vector(reply: Any) -> np.ndarray:
    """The first embedding of an ``embed`` reply (the service client returns the model or a dict)."""
    embeddings = reply["embeddings"] if isinstance(reply, dict) else reply.embeddings
    return np.asarray(embeddings[0], dtype=np.float32)
