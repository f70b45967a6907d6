"""Cache-first embedding logic with a real store and a deterministic counting encoder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from services.cache.codec import encode_vector
from services.cache.disk import SqliteStore
from services.cache.keys import embedding_key
from services.embedding.lookup import CachedEmbedder, normalized
from services.wire import from_base64, to_base64

DIM = 8


class CountingEncoder:
    """Vectors derived from the text's bytes; records every batch it was asked for."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return np.stack(
            [np.resize(np.frombuffer(t.encode(), np.uint8), DIM).astype(np.float32) for t in texts]
        )


@pytest.fixture
def embedder(tmp_path: Path) -> CachedEmbedder:
    return CachedEmbedder(SqliteStore(tmp_path / "c.sqlite3"), "emb:v1:test", DIM, max_batch_size=3)


def embed(embedder: CachedEmbedder, texts: list[str], encoder: CountingEncoder) -> tuple[np.ndarray, int]:
    return asyncio.run(embedder.embed(texts, encoder))


def test_second_call_is_all_hits_and_equal(embedder: CachedEmbedder) -> None:
    encoder = CountingEncoder()
    first, hits1 = embed(embedder, ["a", "bb", "ccc"], encoder)
    second, hits2 = embed(embedder, ["a", "bb", "ccc"], encoder)
    assert (hits1, hits2) == (0, 3)
    np.testing.assert_array_equal(first, second)
    assert encoder.batches == [["a", "bb", "ccc"]]


def test_only_distinct_misses_are_computed_in_chunks(embedder: CachedEmbedder) -> None:
    encoder = CountingEncoder()
    embed(embedder, ["a"], encoder)
    vectors, hits = embed(embedder, ["a", "b", "c", "b", "d", "e", "f"], encoder)
    assert hits == 1
    assert encoder.batches[1:] == [["b", "c", "d"], ["e", "f"]]  # max_batch_size=3, "b" once
    np.testing.assert_array_equal(vectors[1], vectors[3])


def test_corrupt_or_wrong_sized_entry_is_a_miss_and_is_rewritten(embedder: CachedEmbedder) -> None:
    encoder = CountingEncoder()
    fresh, _ = embed(embedder, ["x", "y"], encoder)
    key_x, key_y = (embedding_key(embedder.namespace, t) for t in ("x", "y"))
    embedder.store.mset([(key_x, b"garbage"), (key_y, encode_vector(np.ones(DIM + 1, np.float32)))])
    again, hits = embed(embedder, ["x", "y"], encoder)
    assert hits == 0
    np.testing.assert_array_equal(again, fresh)
    assert all(v is not None for v in embedder.lookup(["x", "y"]))


def test_normalize_and_base64_helpers() -> None:
    vectors = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(normalized(vectors), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_array_equal(from_base64(to_base64(vectors)), vectors)
