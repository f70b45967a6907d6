"""Cache keys are pure and stable: fixed inputs give fixed strings, forever."""

from services.cache.keys import canonical_json, digest, embedding_key, embedding_namespace


def test_embedding_key_is_a_fixed_string_for_a_fixed_text() -> None:
    namespace = embedding_namespace("all-MiniLM-L6-v2")
    assert namespace == "emb:v1:all-MiniLM-L6-v2"
    assert embedding_key(namespace, "hello world") == ("emb:v1:all-MiniLM-L6-v2:" + digest(b"hello world"))
    assert digest(b"hello world") == "e9a804b2e527fd3601d2ffc0bb023cd6"


def test_two_models_never_share_a_key() -> None:
    text = "same text"
    assert embedding_key(embedding_namespace("a"), text) != embedding_key(embedding_namespace("b"), text)


def test_keys_distinguish_whitespace_and_unicode() -> None:
    ns = embedding_namespace("m")
    keys = {embedding_key(ns, t) for t in ["café", "cafe\u0301", "cafe", "cafe ", " cafe"]}
    assert len(keys) == 5


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, "x"]}) == canonical_json({"a": [1, "x"], "b": 1})
    assert canonical_json({"a": "é"}) == '{"a":"é"}'.encode()


def test_a_lone_surrogate_gets_a_key_of_its_own() -> None:
    """JSON may carry ``"\\ud814"`` (no UTF-8 form): the key must not fail the request, nor merge texts."""
    import json

    from services.llm.response_cache import response_key

    lone = json.loads('{"temperature": 0, "prompt": "\\ud814x"}')
    other = json.loads('{"temperature": 0, "prompt": "\\ud815x"}')
    assert response_key("/v1/completions", lone) != response_key("/v1/completions", other)
    assert canonical_json({"a": "é"}) == '{"a":"é"}'.encode()  # every valid text keeps its bytes
