"""Request and response shapes of the embedding-cache service.

Limits come from settings, so a 4xx names both the field and the configured limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field

from services.settings import get_settings

_LIMITS = get_settings().embedding


def bounded_texts(max_texts: int, max_chars: int) -> object:
    """A list of 1..max_texts non-empty texts of at most max_chars each; a 400 names the limit."""
    text = Annotated[str, Field(min_length=1, max_length=max_chars)]
    return Annotated[
        list[text],
        Field(
            min_length=1,
            max_length=max_texts,
            description=f"1 to {max_texts} non-empty texts of at most {max_chars} chars",
        ),
    ]


if TYPE_CHECKING:  # the checker sees the plain type; pydantic and BentoML see the bounds
    Texts = list[str]
else:
    Texts = bounded_texts(_LIMITS.max_texts, _LIMITS.max_text_chars)
EncodingFormat = Literal["float", "base64"]


class EmbedResponse(BaseModel):
    """Vectors in request order. ``base64`` encodes each vector as little-endian float32 bytes,
    as OpenAI's ``encoding_format="base64"`` does: ~5x smaller than JSON floats."""

    model: str
    dimension: int
    # Not ``list[list[float]] | list[str]``: BentoML documents only the first branch of a field's union.
    embeddings: list[list[float] | str] = Field(
        description="One per text: a list of floats, or with encoding_format=base64 a base64 string."
    )
    cache_hits: int = Field(description="How many of the texts were answered from the cache.")
