"""Request validation of the classic-ML service: each bad input names its field, row and limit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from services.classic.schemas import Rows, Texts, predictions
from services.settings import get_settings

LIMITS = get_settings().classic
ROWS = TypeAdapter(Rows)
TEXTS = TypeAdapter(Texts)


def row(*head: object, width: int = LIMITS.tabular_features) -> list[object]:
    return [*head, *[0.5] * (width - len(head))]


def errors(adapter: TypeAdapter, value: object) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as info:
        adapter.validate_json(json.dumps(value))
    return [(tuple(e["loc"]), e["msg"]) for e in info.value.errors()]


def test_good_rows_and_texts_pass_unchanged() -> None:
    assert ROWS.validate_json(json.dumps([row(1, -2.5e3)])) == [[1.0, -2500.0, *[0.5] * 28]]
    assert TEXTS.validate_json('["a docstring"]') == ["a docstring"]


@pytest.mark.parametrize(
    ("value", "loc", "needle"),
    [
        ([], (), "at least 1 item"),
        ([row()] * (LIMITS.max_rows + 1), (), f"at most {LIMITS.max_rows} items"),
        ([row(), row(width=29)], (1,), f"at least {LIMITS.tabular_features} items"),
        ([row(width=31)], (0,), f"at most {LIMITS.tabular_features} items"),
        ([row(float("nan"))], (0, 0), "finite number"),
        ([row(0.0, float("-inf"))], (0, 1), "finite number"),
        ([row("3")], (0, 0), "valid number"),
        ([row(False)], (0, 0), "valid number"),
        ([[row()]], (0, 0), "valid number"),
    ],
)
def test_bad_rows_name_the_row_and_the_limit(value: object, loc: tuple, needle: str) -> None:
    assert any(got == loc and needle in msg for got, msg in errors(ROWS, value))


@pytest.mark.parametrize(
    ("value", "loc", "needle"),
    [
        ([], (), "at least 1 item"),
        (["ok", ""], (1,), "at least 1 character"),
        (["x" * (LIMITS.max_text_chars + 1)], (0,), f"at most {LIMITS.max_text_chars} characters"),
        ([3], (0,), "valid string"),
        (["t"] * (LIMITS.max_texts + 1), (), f"at most {LIMITS.max_texts} items"),
    ],
)
def test_bad_texts_name_the_text_and_the_limit(value: object, loc: tuple, needle: str) -> None:
    assert any(got == loc and needle in msg for got, msg in errors(TEXTS, value))


def test_predictions_label_each_row_by_its_most_probable_class() -> None:
    proba = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]], dtype=np.float32)
    rows = predictions(["a", "b", "c"], proba)
    assert [r.label for r in rows] == ["b", "a"]
    assert all(list(r.probabilities) == ["a", "b", "c"] for r in rows)
    np.testing.assert_array_equal(np.float32([list(r.probabilities.values()) for r in rows]), proba)
