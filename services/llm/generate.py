"""The typed ``generate`` API: one definition, bound by the LLM service and by the gateway.

BentoML derives an API's schema (``/schema.json``, ``/docs.json``, its clients) from the function's
signature, so both services expose this one function; each keeps its LLM backend at ``self.llm_backend``
(the engine itself, or the LLM service). It opens the engine request before answering, so an engine
error becomes an HTTP error, not a stream that breaks after 200. That error is returned as a response
(BentoML sends a returned Response as is), not raised: BentoML 1.4.40 answers a raised 4xx
``BentoMLException`` with a JSON *array* body, unlike its documented ``{"error": ...}``, and logs a
traceback for each.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from http import HTTPStatus
from typing import Protocol, cast

from starlette.responses import JSONResponse

from services.llm.backends import LLMBackend
from services.llm.proxy import EngineRequestError, EngineUnavailable
from services.llm.schemas import MaxTokens, Prompt, Temperature, TopP, generate_params
from services.wire import retry_headers


class ServesLLM(Protocol):
    llm_backend: LLMBackend


async def generate(
    self: ServesLLM,
    prompt: Prompt,
    max_tokens: MaxTokens = 128,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    seed: int | None = None,
    stop: list[str] | None = None,
) -> AsyncGenerator[str, None]:
    """Stream the completion of ``prompt`` as text pieces (deterministic by default, so cached)."""
    params = generate_params(prompt, max_tokens, temperature, top_p, seed, stop)
    return await started(self.llm_backend.completion_text(params))


async def started(pieces: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The stream, once its first piece (or its error) is there."""
    try:
        first = await anext(pieces, None)
    except EngineRequestError as exc:
        return _error(str(exc), exc.status)
    except EngineUnavailable as exc:
        return _error(str(exc), HTTPStatus.SERVICE_UNAVAILABLE)
    return _prepend(first, pieces)


def _error(message: str, status: int) -> AsyncGenerator[str, None]:
    """BentoML's error body, ``{"error": message}``; 5xx with ``Retry-After``."""
    return cast(AsyncGenerator[str, None], JSONResponse({"error": message}, status, retry_headers(status)))


async def _prepend(first: str | None, rest: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    if first is not None:
        yield first
    async for piece in rest:
        yield piece
