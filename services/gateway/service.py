"""Gateway: the one entry point of the Bento.

It owns no model. It composes the three services with ``bentoml.depends`` (each its own process group,
reached over Unix sockets, never exposed), serves vLLM's whole HTTP API, OpenAI embeddings and the typed
APIs, one ``/metrics`` with every series, and every dependency's readiness at ``GET /status``.

LLM traffic takes the shortest path there is: when the LLM service runs on this host (``bentoml serve``,
the container), the gateway relays straight to its vLLM engine and applies the response cache itself,
so a request crosses one relay, as with the LLM service alone; through the LLM service it crossed two
BentoML workers (+6 ms TTFT p50 at 16 req/s on an H200, docs/ARCHITECTURE.md). In a split deployment the
engine is another pod's loopback port, so the gateway goes through the LLM service.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import bentoml
import numpy as np

from services.answer_on_error import AnswerOnError
from services.bentoml_adapter import (
    add_middleware,
    dependency_url,
    fix_bentoml,
    mark_streaming,
    openapi_document,
)
from services.classic.contract import ModelSpec, typed_api
from services.classic.registry import MODELS as CLASSIC_MODELS
from services.classic.schemas import INPUT_TYPES, Prediction
from services.classic.service import ClassicML
from services.embedding.schemas import EmbedResponse, EncodingFormat
from services.embedding.schemas import Texts as EmbedTexts
from services.embedding.service import EmbeddingCache
from services.gateway.front_door import Admission, ApiKeys, BodyLimit, read_keys
from services.gateway.openapi import merged_document
from services.gateway.routes import MetricsFromLLMService, RelayToOwner, create_app, probe
from services.gc_tuning import settle_gc_on_start
from services.llm.backends import (
    EngineBackend,
    LLMBackend,
    ServiceBackend,
    embed_prompt,
    engine_backend,
)
from services.llm.generate import generate
from services.llm.service import LLM
from services.metrics_exposition import merged, scrape
from services.relay import Upstream, UpstreamUnavailable, dependency_upstream
from services.request_id import with_request_ids
from services.settings import Settings, get_settings

fix_bentoml()
SETTINGS = get_settings()
CONFIG = SETTINGS.gateway
log = logging.getLogger(__name__)


def _service() -> Gateway:
    return bentoml.get_current_service()  # type: ignore[no-any-return]


class Gateway:
    """OpenAI API, embeddings and classification behind one address."""

    llm = bentoml.depends(LLM)
    embeddings = bentoml.depends(EmbeddingCache)
    classic = bentoml.depends(ClassicML)

    def __init__(self) -> None:
        self.llm_backend = _llm_backend(SETTINGS, self._embed_prompt if SETTINGS.llm.semantic_cache else None)
        self.llm_service = _dependency("llm")
        self.embedding_upstream = _dependency("embedding_cache")
        self.classic_upstream = _dependency("classic_ml")
        self._engine_doc: dict[str, Any] | None = None

    async def _embed_prompt(self, text: str) -> np.ndarray:
        return await embed_prompt(self.embedding_upstream, text)

    async def __metrics__(self, content: str) -> str:
        """Split into pods (on one host ``MetricsFromLLMService`` answers instead): every service's own
        series, gathered and merged so each family appears once, the engine's and GPUs' among them."""
        upstreams = (self.llm_service, self.embedding_upstream, self.classic_upstream)
        return await merged([content, *await asyncio.gather(*(scrape(u) for u in upstreams))])

    _settle_gc = bentoml.on_startup(settle_gc_on_start)

    @bentoml.on_shutdown
    async def _close(self) -> None:
        await self.llm_backend.close()
        upstreams = (self.llm_service, self.embedding_upstream, self.classic_upstream)
        await asyncio.gather(*(upstream.close() for upstream in upstreams))

    async def status(self) -> dict[str, Any]:
        async def ready(dep: Any, **detail: Any) -> dict[str, Any]:
            if not await dep.is_ready(5):
                raise RuntimeError("not ready")
            return detail

        route = "engine" if isinstance(self.llm_backend, EngineBackend) else "service"
        checks = {
            "llm": lambda: ready(self.llm, route=route),
            "embeddings": lambda: self.embeddings.to_async.info(),
            "classic": lambda: self.classic.to_async.info(),
        }
        return dict(await asyncio.gather(*(probe(name, check) for name, check in checks.items())))

    async def openapi(self) -> dict[str, Any]:
        """``/docs.json``: the engine's document is fetched once it answers, then kept."""
        if self._engine_doc is None:
            self._engine_doc = await _engine_document(self.llm_backend)
        return merged_document(openapi_document(Gateway), self._engine_doc)

    @bentoml.api
    async def embed(
        self, texts: EmbedTexts, normalize: bool = False, encoding_format: EncodingFormat = "float"
    ) -> EmbedResponse:
        """Cached sentence embeddings: the embedding-cache service's answer, as it gave it."""
        raise _relayed("/embed")

    generate = bentoml.api(generate)  # services/llm/generate.py, shared with the LLM service


def _relayed(route: str) -> RuntimeError:
    """The typed APIs that only pass requests on are declared here for their contract (``/docs.json``, the
    BentoML client), but RelayToOwner answers every POST to them as bytes before BentoML reaches their
    body: the owner validates, sheds (a 503 naming its bound) and answers."""
    return RuntimeError(f"POST {route} is answered by RelayToOwner, which is not installed")


def _classic_api(spec: ModelSpec) -> Any:
    async def forward(self: Gateway, rows: Any) -> Any:
        raise _relayed(spec.route)

    return bentoml.api(typed_api(spec, INPUT_TYPES[spec.kind], list[Prediction], forward))


for _model in CLASSIC_MODELS:  # one route per registered classic model, typed as the service's own
    setattr(Gateway, _model.SPEC.api, _classic_api(_model.SPEC))

Gateway = bentoml.asgi_app(create_app(_service), path="/", name="gateway-routes")(  # type: ignore[misc]
    bentoml.service(
        name="inference_stack",
        workers=CONFIG.workers,
        resources={"cpu": "2"},
        # BentoML's own bound sits above ours (Admission): its 429 carries no Retry-After.
        traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency + 64},
        tracing={"excluded_urls": ["/v1/", "/generate"]},  # a span per streamed chunk otherwise
    )(Gateway)
)
mark_streaming(Gateway, "generate")
# Ours run inside BentoML's middlewares, in this order (outermost first): the id, then the front door
# (keys, body size, admission: a refusal costs no routing), then the rest.
with_request_ids(Gateway)
add_middleware(
    Gateway,
    ApiKeys,
    keys=read_keys([k.get_secret_value() for k in CONFIG.api_keys], CONFIG.api_keys_file),
    protect_metrics=CONFIG.metrics_need_key,
)
add_middleware(Gateway, BodyLimit, max_bytes=CONFIG.max_body_bytes)
add_middleware(
    Gateway,
    Admission,
    max_inflight=CONFIG.max_concurrency,
    max_llm_inflight=CONFIG.llm_max_inflight or 4 * SETTINGS.llm.max_num_seqs,
    not_llm=frozenset({"/status", "/docs.json", "/schema.json", "/metrics", "/v1/embeddings", "/embed"})
    | {model.SPEC.route for model in CLASSIC_MODELS},
)
add_middleware(Gateway, AnswerOnError)  # /readyz of a service with dependencies can raise
add_middleware(
    Gateway,
    MetricsFromLLMService,
    get_service=_service,
    one_host=lambda backend: isinstance(backend, EngineBackend),
)
add_middleware(  # innermost of ours: the front door has admitted the request
    Gateway,
    RelayToOwner,
    get_service=_service,
    owners={"/embed": ("embedding_upstream", "embedding_cache")}
    | {model.SPEC.route: ("classic_upstream", "classic_ml") for model in CLASSIC_MODELS},
)


def _dependency(name: str) -> Upstream:
    upstream = dependency_upstream(name)
    if upstream is None:
        raise RuntimeError(
            f"the gateway needs the {name} service as its own server (bentoml serve or --depends)"
        )
    return upstream


def _llm_backend(settings: Settings, embed_prompt: Any) -> LLMBackend:
    """Straight to the engine when it runs on this host (the LLM service is a Unix socket away), else
    through the LLM service. ``INFSTACK_GATEWAY__LLM_ROUTE`` forces either."""
    url = dependency_url("llm")
    route = settings.gateway.llm_route
    if route == "auto":
        route = "engine" if url is None or url.startswith("file:") else "service"
    log.info(
        "gateway: LLM traffic goes to the %s", "vLLM engine directly" if route == "engine" else "LLM service"
    )
    if route == "engine":
        return engine_backend(settings, embed_prompt, hop="gateway")
    if url is None:
        raise RuntimeError("INFSTACK_GATEWAY__LLM_ROUTE=service needs the llm service as its own server")
    return ServiceBackend(Upstream("LLM service", url))


def _upstream(backend: LLMBackend) -> Upstream:
    """The server LLM traffic goes to: the engine, or the LLM service."""
    return backend.engine if isinstance(backend, EngineBackend) else backend.service  # type: ignore[attr-defined]


async def _engine_document(backend: LLMBackend) -> dict[str, Any] | None:
    """vLLM's own OpenAPI document (the LLM service relays it unchanged)."""
    try:
        response = await asyncio.wait_for(_upstream(backend).request("GET", "/openapi.json"), 10)
        async with response:
            document: dict[str, Any] | None = await response.json() if response.status == 200 else None
            return document
    except (UpstreamUnavailable, TimeoutError, ValueError) as exc:
        log.info("docs.json: the engine's document is not available yet (%s)", exc)
        return None
