"""Request and response shapes of the classic-ML service.

Each model's request field is its ``input_type``: pydantic constraints, so BentoML answers a bad request
with 400 and ``detail[].loc`` naming the field, the row and the value (``["rows", 3]`` "List should have at
least 30 items"; ``["rows", 3, 7]`` "Input should be a finite number"). Numbers are strict: ``"1.5"`` and
``true`` are type errors, not silently converted. Limits come from settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from services.classic.registry import MODELS
from services.settings import get_settings

INPUT_TYPES: dict[str, Any] = {model.SPEC.kind: model.input_type(get_settings()) for model in MODELS}

if TYPE_CHECKING:
    Rows = list[list[float]]
    Texts = list[str]
else:  # the two first models' field types by name, as clients and tests know them
    Rows, Texts = INPUT_TYPES["tabular"], INPUT_TYPES["text"]


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
