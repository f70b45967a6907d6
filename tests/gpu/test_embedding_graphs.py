"""services/embedding/cuda_graphs.py on a GPU: a replayed graph gives the vectors an eager pass gives, for
every shape a batch takes (padded rows and tokens, truncation), and on two threads at once (the batcher's
batches_in_flight); a batch past the largest bucket or the cell budget runs eagerly, as the replay count
shows.

Run on the GPU machine only (marked `gpu`, deselected in CI):
    python3 -m pytest tests/gpu -m gpu -p no:cacheprovider
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from services.embedding.cuda_graphs import GraphedEncoder
from services.embedding.model import encode_batch, load_sentence_model

pytestmark = pytest.mark.gpu
ATOL = 1e-4  # a padded shape may pick other kernels than the eager pass's own


@pytest.fixture(scope="module")
def cuda_minilm():
    return load_sentence_model("all-MiniLM-L6-v2", "cuda:0")


@pytest.fixture(scope="module")
def graphed(cuda_minilm) -> GraphedEncoder:
    return GraphedEncoder(cuda_minilm, 64, 64 * 256)


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["socket", "port", "kernel", "bridge", "river", "tensor", "graph", "batch", "queue", "cache"]
    return [" ".join(rng.choices(words, k=rng.randint(1, 120))) for _ in range(count)]


@pytest.mark.parametrize("count", [1, 3, 8, 17, 64, 65])
def test_a_replay_gives_the_eager_vectors(cuda_minilm, graphed: GraphedEncoder, count: int) -> None:
    texts = _texts(count, count)
    if count == 3:
        texts.append("word " * 400)  # truncated at the model's 256 tokens: the largest token bucket
    replays = graphed.replays
    np.testing.assert_allclose(graphed.encode(texts), encode_batch(cuda_minilm, texts), rtol=0, atol=ATOL)
    assert graphed.replays == replays + (count <= 64)  # past the largest bucket: eager


def test_every_bucket_is_captured(graphed: GraphedEncoder) -> None:
    assert graphed.row_sizes == (1, 2, 4, 8, 16, 32, 64) and graphed.token_sizes == (16, 32, 64, 128, 256)
    assert graphed.graph_count == 35


def test_two_threads_replaying_at_once_get_their_own_vectors(cuda_minilm, graphed: GraphedEncoder) -> None:
    batches = [_texts(5, seed) for seed in range(8)]
    expected = [encode_batch(cuda_minilm, batch) for batch in batches]
    errors: list[BaseException] = []

    def replay(order: list[int]) -> None:
        try:
            for _ in range(20):
                for index in order:
                    np.testing.assert_allclose(
                        graphed.encode(batches[index]), expected[index], rtol=0, atol=ATOL
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=replay, args=(order,)) for order in ([0, 1, 2, 3, 4, 5, 6, 7], [7, 5, 3, 1])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert graphed.replays >= 20 * 12


def test_cells_past_the_budget_run_eagerly(cuda_minilm) -> None:
    small = GraphedEncoder(cuda_minilm, 64, 8 * 64)  # texts x tokens <= 512: not 16 texts x 64 tokens
    assert 0 < small.graph_count < 35
    texts = _texts(16, 3)
    np.testing.assert_allclose(small.encode(texts), encode_batch(cuda_minilm, texts), rtol=0, atol=ATOL)
    assert small.replays == 0
