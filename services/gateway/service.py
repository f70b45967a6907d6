"""Gateway: the one entry point of the Bento.

It owns no model. It composes the three services with ``bentoml.depends`` (each its own process
group, reached over Unix sockets, never exposed), relays the OpenAI API to the LLM service, forwards
the typed APIs, and shows every dependency's readiness at ``GET /status``.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncGenerator, AsyncIterator
from http import HTTPStatus
from typing import Any

import aiohttp
import bentoml
from bentoml.exceptions import BentoMLException
from starlette.responses import Response

from services.answer_on_error import AnswerOnError
from services.classic.schemas import Prediction, Rows, Texts
from services.classic.service import ClassicML
from services.classic.shedding import MODEL_HEADER, dependency_failed
from services.embedding.schemas import EmbedResponse, EncodingFormat
from services.embedding.schemas import Texts as EmbedTexts
from services.embedding.service import EmbeddingCache
from services.gateway.routes import create_app, probe
from services.http_relay import relay_chunks
from services.llm.schemas import MaxTokens, Prompt, Temperature, TopP
from services.llm.service import LLM, STREAMING_ROUTES
from services.settings import get_settings
from services.streaming import mark_streaming

CONFIG = get_settings().gateway


@bentoml.asgi_app(create_app(bentoml.get_current_service), path="/", name="gateway-routes")
@bentoml.service(
    name="inference_stack",
    workers=CONFIG.workers,
    resources={"cpu": "2"},
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    tracing={"excluded_urls": list(STREAMING_ROUTES)},  # a span per streamed chunk otherwise
)
class Gateway:
    """OpenAI API, embeddings and classification behind one address."""

    llm = bentoml.depends(LLM)
    embeddings = bentoml.depends(EmbeddingCache)
    classic = bentoml.depends(ClassicML)

    async def llm_session(self) -> aiohttp.ClientSession:
        return await _session(self.llm)

    async def status(self) -> dict[str, Any]:
        async def ready(dep: Any) -> dict[str, Any]:
            if not await dep.is_ready(5):
                raise RuntimeError("not ready")
            return {}

        checks = {
            "llm": lambda: ready(self.llm),
            "embeddings": lambda: self.embeddings.to_async.info(),
            "classic": lambda: self.classic.to_async.info(),
        }
        return dict(await asyncio.gather(*(probe(name, check) for name, check in checks.items())))

    @bentoml.api
    async def embed(
        self, texts: EmbedTexts, normalize: bool = False, encoding_format: EncodingFormat = "float"
    ) -> EmbedResponse:
        """Cached sentence embeddings (see the embedding-cache service)."""
        return await self.embeddings.to_async.embed(
            texts=texts, normalize=normalize, encoding_format=encoding_format
        )

    @bentoml.api
    async def classify_text(self, texts: Texts) -> list[Prediction]:
        return await self._classic("/classify_text", {"texts": texts})  # type: ignore[return-value]

    @bentoml.api
    async def predict_tabular(self, rows: Rows) -> list[Prediction]:
        return await self._classic("/predict_tabular", {"rows": rows})  # type: ignore[return-value]

    async def _classic(self, route: str, payload: dict[str, Any]) -> Response:
        """The classic service's answer as it gave it (validated here already): its status, body and
        model header, so a shed request stays a 503 that names the batching bound."""
        session = await _session(self.classic)
        try:
            async with session.post(route, json=payload) as upstream:
                body = await upstream.read()
                headers = {
                    k: upstream.headers[k] for k in (MODEL_HEADER, "retry-after") if k in upstream.headers
                }
                return Response(body, upstream.status, headers, media_type="application/json")
        except aiohttp.ClientError:
            return dependency_failed("classic_ml")

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
        """Stream a completion from the LLM service's typed API.

        Relayed over HTTP rather than through the dependency client: that client decides streaming
        by introspecting the callee, and the callee is a coroutine (so that engine errors become
        HTTP errors before the stream starts).
        """
        payload = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
                   "seed": seed, "stop": stop}  # fmt: skip
        session = await self.llm_session()
        upstream = await session.post("/generate", json=payload, timeout=aiohttp.ClientTimeout(total=None))
        if upstream.status != 200:
            detail = await upstream.text()
            upstream.release()
            raise BentoMLException(_error_message(detail), error_code=HTTPStatus(upstream.status))
        return _decoded(relay_chunks(upstream))


mark_streaming(Gateway, "generate")
Gateway.add_asgi_middleware(AnswerOnError)  # /readyz of a service with dependencies can raise


async def _session(dependency: Any) -> aiohttp.ClientSession:
    """A dependency client's own aiohttp session (Unix socket or TCP, as BentoML wired it).
    BentoML has no public accessor for it; this is the one place that reaches inside."""
    return await dependency.to_async._session_manager.get_session()  # type: ignore[no-any-return]


def _error_message(body: str) -> str:
    """BentoML answers an error as [{"error": message}] (or {"error": ...}); pass the message on,
    not the envelope, or it is wrapped twice."""
    try:
        value = json.loads(body)
        return str((value[0] if isinstance(value, list) else value)["error"])
    except (ValueError, KeyError, TypeError, IndexError):
        return body


async def _decoded(chunks: AsyncIterator[bytes]) -> AsyncGenerator[str, None]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    async for chunk in chunks:
        if text := decoder.decode(chunk):
            yield text
