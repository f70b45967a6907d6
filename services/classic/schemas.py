"""Request and response shapes of the classic-ML service.

Every check is a pydantic constraint, so BentoML answers a bad request with 400 and ``detail[].loc``
naming the field, the row and the value: ``["rows", 3]`` "List should have at least 30 items" for a short
row, ``["rows", 3, 7]`` "Input should be a finite number" for NaN or inf. Numbers are strict: ``"1.5"``
and ``true`` are type errors, not silently converted. Limits come from settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import BaseModel, Field

from services.embedding.schemas import bounded_texts
from services.settings import get_settings

_LIMITS = get_settings().classic
_FEATURES = _LIMITS.tabular_features

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Row = Annotated[
    list[FiniteFloat],
    Field(min_length=_FEATURES, max_length=_FEATURES, description=f"{_FEATURES} finite numbers"),
]
Rows = Annotated[
    list[Row],
    Field(
        min_length=1,
        max_length=_LIMITS.max_rows,
        description=f"1 to {_LIMITS.max_rows} rows of {_FEATURES} finite numbers each",
    ),
]
if TYPE_CHECKING:  # the checker sees the plain type; pydantic and BentoML see the bounds
    Texts = list[str]
else:
    Texts = bounded_texts(_LIMITS.max_texts, _LIMITS.max_text_chars)


class Prediction(BaseModel):
    """One input's answer. A list of these is the response: the APIs are BentoML batchable APIs, whose
    output is split back per request along the rows, so every field is per row."""

    label: str = Field(description="The most probable class.")
    probabilities: dict[str, float] = Field(description="Probability per class name; sums to 1.")


def predictions(class_names: list[str], proba: np.ndarray) -> list[Prediction]:
    """Rows of a (n, classes) probability array as answers; the column order is ``class_names``."""
    proba = np.asarray(proba, dtype=np.float32)
    return [
        Prediction(
            label=class_names[int(p.argmax())], probabilities=dict(zip(class_names, p.tolist(), strict=True))
        )
        for p in proba
    ]
