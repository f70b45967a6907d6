"""POST /v1/embeddings request rules: OpenAI's fields, OpenAI's error shape, the field and limit named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.embedding.openai_api import BadRequest, answer, parse, render
from services.wire import from_base64

SERVED, DIM = "all-MiniLM-L6-v2", 384


def parsed(**body: object) -> tuple:
    return parse(json.dumps(body).encode(), SERVED, DIM, max_texts=4, max_chars=10)


def test_a_string_or_a_list_of_strings_is_accepted_and_the_model_may_be_omitted() -> None:
    assert parsed(input="hello", model=SERVED)[1] == ["hello"]
    request, texts = parsed(input=["a", "b"], encoding_format="base64", dimensions=DIM, user="u")
    assert texts == ["a", "b"] and request.encoding_format == "base64"


@pytest.mark.parametrize(
    ("body", "status", "param", "needle"),
    [
        ({"input": "x", "model": "text-embedding-3-small"}, 404, "model", "does not exist"),
        ({"input": [1, 2, 3]}, 400, "input", "token ids are not accepted"),
        ({"input": [[1, 2]]}, 400, "input", "token ids"),
        ({"input": ["a"] * 5}, 400, "input", "at most 4 texts"),
        ({"input": ["ok", "x" * 11]}, 400, "input", "input[1]: at most 10 characters"),
        ({"input": ["ok", ""]}, 400, "input", "input[1]: empty"),
        ({"input": []}, 400, "input", "at least one"),
        ({"input": "x", "dimensions": 128}, 400, "dimensions", "384 dimensions only"),
        ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format", "encoding_format"),
        ({"model": SERVED}, 400, "input", "input"),
    ],
)
def test_bad_requests_name_the_field_and_the_limit(body: dict, status: int, param: str, needle: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parsed(**body)
    assert (caught.value.status, caught.value.param) == (status, param)
    assert needle in str(caught.value)


def test_the_answer_is_openais_list_of_embeddings_with_usage() -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    request, _ = parsed(input=["a", "b"])
    body = json.loads(render(answer(request, SERVED, vectors, tokens=7)))  # as the client gets it
    assert body["object"] == "list" and body["model"] == SERVED
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][1]["embedding"] == [3.0, 4.0, 5.0]
    request, _ = parsed(input=["a", "b"], encoding_format="base64")
    packed = json.loads(render(answer(request, SERVED, vectors, tokens=7)))
    np.testing.assert_array_equal(from_base64([d["embedding"] for d in packed["data"]]), vectors)


def test_float_vectors_survive_the_json_exactly_as_float32() -> None:
    vectors = np.random.default_rng(0).standard_normal((4, 384)).astype(np.float32)
    request, _ = parsed(input=["a", "b", "c", "d"])
    body = json.loads(render(answer(request, SERVED, vectors, tokens=1)))
    np.testing.assert_array_equal(np.float32([d["embedding"] for d in body["data"]]), vectors)
