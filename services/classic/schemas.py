"""Request and response shapes of the classic-ML service.

Every check is a pydantic constraint, so BentoML answers a bad request with 400 and ``detail[].loc``
naming the field, the row and the value: ``["rows", 3]`` "List should have at least 30 items" for a short
row, ``["rows", 3, 7]`` "Input should be a finite number" for NaN or inf. Numbers are strict: ``"1.5"``
and ``true`` are type errors, not silently converted. Limits come from settings.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

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
Texts = bounded_texts(_LIMITS.max_texts, _LIMITS.max_text_chars)


class Predictions(BaseModel):
    """One label and one probability per class for every input, in request order."""

    model: str = Field(description="Model-store tag that answered.")
    class_names: list[str] = Field(description="Column order of ``probabilities``.")
    labels: list[str] = Field(description="The most probable class of each input.")
    probabilities: list[list[float]] = Field(description="Per input, one probability per class; sums to 1.")

    @classmethod
    def from_proba(cls, model: str, class_names: list[str], proba: np.ndarray) -> Predictions:
        proba = np.asarray(proba, dtype=np.float32)
        return cls(
            model=model,
            class_names=class_names,
            labels=[class_names[i] for i in proba.argmax(axis=1)],
            probabilities=proba.tolist(),
        )


def overloaded(model: str, max_latency_ms: int) -> JSONResponse:
    """The 503 body when adaptive batching sheds a request: says why and what bound it hit.

    BentoML's own 503 body for this case is a generic "unexpected error", so the service answers itself.
    """
    return JSONResponse(
        {
            "error": f"overloaded: the {model} model cannot answer within max_latency_ms={max_latency_ms}"
            " at the current load; retry later",
            "model": model,
            "max_latency_ms": max_latency_ms,
        },
        status_code=503,
        headers={"Retry-After": "1"},
    )
