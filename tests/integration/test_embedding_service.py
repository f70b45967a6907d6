"""The embedding-cache service under `bentoml serve`, called over HTTP, with its disk store."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from scripts.procs import BentoServer, metric_value, wait_until
from services.cache.keys import embedding_key, embedding_namespace
from services.embedding.langchain import InferenceStackEmbeddings
from services.wire import from_base64
from tests.conftest import EMBEDDING_TARGET, burst, embedding_env

pytestmark = pytest.mark.integration


def unique_texts(n: int) -> list[str]:
    """Texts no earlier test has cached."""
    tag = uuid.uuid4().hex[:8]
    return [f"sentence {i} about topic {tag}" for i in range(n)]


def post_embed(server: BentoServer, **payload: object) -> httpx.Response:
    return httpx.post(f"{server.url}/embed", json=payload, timeout=60)


def embed(server: BentoServer, texts: list[str], **options: object) -> dict:
    response = post_embed(server, texts=texts, **options)
    assert response.status_code == 200, response.text
    return response.json()


def test_cache_hit_returns_the_vector_computed_on_miss(embedding_server, reference_model) -> None:
    texts = unique_texts(20)  # chunks of 8, 8 (full: straight to the model) and 4 (adaptive batching)
    miss = embed(embedding_server, texts)
    hit = embed(embedding_server, texts)
    assert (miss["cache_hits"], hit["cache_hits"]) == (0, 20)
    assert miss["model"] == "all-MiniLM-L6-v2"
    assert miss["dimension"] == 384
    assert np.asarray(miss["embeddings"], np.float32).shape == (20, 384)
    np.testing.assert_array_equal(np.float32(hit["embeddings"]), np.float32(miss["embeddings"]))
    fresh = reference_model.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(np.float32(hit["embeddings"]), fresh, atol=1e-5)


def test_texts_of_mixed_lengths_come_back_in_order(embedding_server, reference_model) -> None:
    """Misses are encoded in passes of similar lengths (services/embedding/model.py: length_groups);
    each vector must still land at its own text's position."""
    tag = uuid.uuid4().hex[:8]
    texts = [f"{tag} " + "word " * n for n in (37, 1, 12, 3, 30, 2, 36, 10, 1, 20)]  # 14-194 characters
    vectors = np.float32(embed(embedding_server, texts)["embeddings"])
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(
            vector, reference_model.encode([text], convert_to_numpy=True)[0], atol=1e-5
        )


def test_mixed_request_computes_only_new_texts_once(embedding_server) -> None:
    old, new = unique_texts(2), unique_texts(2)
    embed(embedding_server, old)
    body = embed(embedding_server, [old[0], new[0], new[0], old[1], new[1]])
    assert body["cache_hits"] == 2
    vectors = np.float32(body["embeddings"])
    np.testing.assert_array_equal(vectors[1], vectors[2])


def test_normalize_and_base64_options(embedding_server) -> None:
    texts = unique_texts(3)
    plain = np.float32(embed(embedding_server, texts)["embeddings"])
    unit = np.float32(embed(embedding_server, texts, normalize=True)["embeddings"])
    packed = from_base64(embed(embedding_server, texts, encoding_format="base64")["embeddings"])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit, plain / np.linalg.norm(plain, axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(packed, plain)


def test_corrupt_entry_is_a_miss_and_is_rewritten(embedding_server, session_dir: Path) -> None:
    texts = unique_texts(2)
    fresh = np.float32(embed(embedding_server, texts)["embeddings"])
    key = embedding_key(embedding_namespace("all-MiniLM-L6-v2"), texts[0])
    path = session_dir / "disk-cache" / "cache.sqlite3"

    def stored() -> bool:  # writes are behind the answer (services/cache/write_behind.py)
        with sqlite3.connect(path) as db:
            return db.execute("SELECT 1 FROM kv WHERE key = ?", (key,)).fetchone() is not None

    wait_until(stored, 10, "the vector's write")
    with sqlite3.connect(path) as db:
        assert db.execute("UPDATE kv SET value = ? WHERE key = ?", (b"\x00corrupt", key)).rowcount == 1
    again = embed(embedding_server, texts)
    assert again["cache_hits"] == 1
    np.testing.assert_allclose(np.float32(again["embeddings"]), fresh, atol=1e-5)
    assert embed(embedding_server, texts)["cache_hits"] == 2  # rewritten
    metrics = httpx.get(f"{embedding_server.url}/metrics").text
    assert (
        metric_value(metrics, "infstack_cache_lookups_total", cache="embedding", result="corrupt") or 0
    ) >= 1


@pytest.mark.parametrize(
    ("payload", "field", "needle"),
    [
        ({"texts": []}, ["texts"], "at least 1 item"),
        ({"texts": ["ok", 3]}, ["texts", 1], "valid string"),
        ({"texts": [f"t{i}" for i in range(33)]}, ["texts"], "at most 32 items"),
        ({"texts": ["x" * 201]}, ["texts", 0], "at most 200 characters"),
        ({"texts": [""]}, ["texts", 0], "at least 1 character"),
        ({"texts": "just a string"}, ["texts"], "valid array"),
        ({"texts": ["ok"], "normalize": "perhaps"}, ["normalize"], "valid boolean"),
        ({"texts": ["ok"], "encoding_format": "int8"}, ["encoding_format"], "'float' or 'base64'"),
        ({}, ["texts"], "Field required"),
    ],
)
def test_bad_input_is_a_400_naming_field_and_limit(embedding_server, payload, field, needle) -> None:
    response = post_embed(embedding_server, **payload)
    assert response.status_code == 400
    details = response.json()["detail"]
    assert any(d["loc"] == field and needle in d["msg"] for d in details), details


def test_metrics_expose_hits_misses_latency_and_batches(embedding_server) -> None:
    embed(embedding_server, unique_texts(3))
    metrics = httpx.get(f"{embedding_server.url}/metrics").text
    for series in (
        'infstack_cache_lookups_total{cache="embedding",result="hit"}',
        'infstack_cache_lookups_total{cache="embedding",result="miss"}',
        'infstack_cache_lookup_seconds_count{cache="embedding"}',
        'infstack_cache_backend_up{backend="disk",cache="embedding"}',
        "infstack_embedding_batch_size_count",
        "infstack_embedding_model_seconds_count",
    ):
        assert series in metrics, series
    assert (metric_value(metrics, "infstack_embedding_batch_size_count") or 0) >= 1


def test_langchain_embeddings_adapter_matches_the_service(embedding_server) -> None:
    texts = unique_texts(3)
    adapter = InferenceStackEmbeddings(base_url=embedding_server.url, chunk_size=2)
    documents = np.float32(adapter.embed_documents(texts))
    query = np.float32(adapter.embed_query(texts[0]))
    np.testing.assert_array_equal(documents, np.float32(embed(embedding_server, texts)["embeddings"]))
    np.testing.assert_array_equal(query, documents[0])


def test_info_reports_model_and_backend(embedding_server) -> None:
    info = httpx.post(f"{embedding_server.url}/info", json={}).json()
    assert info == {
        "model": "all-MiniLM-L6-v2",
        "dimension": 384,
        "cache_backend": "disk",
        "cache_backend_up": True,
        "runtime": "onnx",  # the cpu default: ONNX Runtime, checked against torch at start
        "cuda_graphs": 0,
    }


def test_a_refused_request_is_a_503_naming_the_bound_with_one_log_line(
    bento_factory: Callable[..., BentoServer], session_dir: Path
) -> None:
    """A 1 ms batching bound under a burst of misses: refusals say whose bound, in both APIs' shapes,
    and each costs one log line, not BentoML's "unexpected error" and a traceback."""
    env = embedding_env(session_dir / "overload-cache", INFSTACK_EMBEDDING__MAX_LATENCY_MS="1")
    server = bento_factory(EMBEDDING_TARGET, env, "embedding-overload")
    replies = burst(server, "embed", [{"texts": unique_texts(2)} for _ in range(40)])
    replies += burst(server, "v1/embeddings", [{"input": unique_texts(2)} for _ in range(40)])
    codes = [r.status_code for r in replies]
    assert set(codes) <= {200, 503} and codes.count(503) > 0, codes
    refused = [r for r in replies if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" for r in refused)
    plain = [r.json() for r in refused if r.url.path == "/embed"]
    openai = [r.json()["error"] for r in refused if r.url.path == "/v1/embeddings"]
    assert all(b["service"] == "embedding_cache" and b["max_latency_ms"] == 1 for b in plain)
    assert all("max_latency_ms=1" in e["message"] and e["code"] == 503 for e in openai)
    assert all("embedding_cache" in m for m in [b["error"] for b in plain] + [e["message"] for e in openai])
    count = metric_value(httpx.get(f"{server.url}/metrics").text, "infstack_embedding_overloaded_total")
    log = server.log_tail(2_000_000)
    server.stop()
    assert count == len(refused)
    assert log.count("refused a request: overloaded") == len(refused)
    assert "Traceback" not in log and "unexpected error" not in log
