"""The typed ``generate`` API: one definition, bound by the LLM service and by the gateway.

BentoML derives an API's schema (``/schema.json``, ``/docs.json``, its clients) from the function's
signature, so both services expose this one function; each keeps its LLM backend at ``self.llm_backend``
(the engine itself, or the LLM service). It opens the engine request before answering, so an engine
error becomes an HTTP error (BentoML answers the exception's status), not a stream that breaks after 200.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from http import HTTPStatus
from typing import Protocol

from bentoml.exceptions import BentoMLException

from services.llm.backends import LLMBackend
from services.llm.proxy import EngineRequestError, EngineUnavailable
from services.llm.schemas import MaxTokens, Prompt, Temperature, TopP, generate_params


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
        raise BentoMLException(str(exc), error_code=HTTPStatus(exc.status)) from None
    except EngineUnavailable as exc:
        raise BentoMLException(str(exc), error_code=HTTPStatus.SERVICE_UNAVAILABLE) from None
    return _prepend(first, pieces)


async def _prepend(first: str | None, rest: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    if first is not None:
        yield first
    async for piece in rest:
        yield piece
