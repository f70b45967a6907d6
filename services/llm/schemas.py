"""Parameter types of the typed generate API, shared by the LLM service and the gateway."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.settings import get_settings

_LIMIT = get_settings().llm.max_generate_tokens

Prompt = Annotated[str, Field(min_length=1)]
MaxTokens = Annotated[int, Field(ge=1, le=_LIMIT, description=f"1 to {_LIMIT} tokens")]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]


def generate_params(
    prompt: str, max_tokens: int, temperature: float, top_p: float, seed: int | None, stop: list[str] | None
) -> dict[str, object]:
    """The typed ``generate`` API's arguments as /v1/completions fields (unset ones left out)."""
    params = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
              "seed": seed, "stop": stop}  # fmt: skip
    return {k: v for k, v in params.items() if v is not None}
