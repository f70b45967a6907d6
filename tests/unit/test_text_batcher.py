"""The embedding service's text batcher: texts of concurrent requests share model calls, each request
gets its own vectors in order, and only a queue that cannot meet the bound refuses."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from services.embedding.batcher import TextBatcher
from services.embedding.lookup import Overloaded


class Model:
    """A deterministic stand-in for the sentence model: each text's vector is (len, first char code),
    and every call takes ``seconds_per_text`` per text, as a CPU model roughly does."""

    def __init__(self, seconds_per_text: float = 0.002) -> None:
        self.seconds_per_text = seconds_per_text
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        time.sleep(self.seconds_per_text * len(texts))
        if any(t == "boom" for t in texts):
            raise RuntimeError("model failed")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def expected(texts: list[str]) -> np.ndarray:
    return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def test_concurrent_requests_share_calls_and_get_their_own_vectors() -> None:
    model = Model()
    batcher = TextBatcher(model, max_batch_size=8, max_latency_ms=10_000)
    requests = [[f"{chr(97 + i)}{'x' * j}" for j in range(3)] for i in range(10)]

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.encode(texts) for texts in requests))

    results = asyncio.run(run())
    for texts, vectors in zip(requests, results, strict=True):
        np.testing.assert_array_equal(vectors, expected(texts))
    assert sum(model.calls) == 30 and max(model.calls) <= 8
    assert len(model.calls) < 10  # fewer model calls than requests: they were batched
    batcher.close()


def test_a_request_larger_than_a_batch_is_split_and_reassembled_in_order() -> None:
    model = Model(seconds_per_text=0)
    batcher = TextBatcher(model, max_batch_size=4, max_latency_ms=10_000)
    texts = [chr(97 + i) * (i + 1) for i in range(11)]
    np.testing.assert_array_equal(asyncio.run(batcher.encode(texts)), expected(texts))
    assert model.calls == [4, 4, 3]
    batcher.close()


def test_only_a_queue_that_cannot_meet_the_bound_is_refused() -> None:
    model = Model(seconds_per_text=0.01)  # 10 ms per text once measured
    batcher = TextBatcher(model, max_batch_size=4, max_latency_ms=100)

    async def run() -> None:
        await batcher.encode(["a", "b", "c", "d"])  # a full batch: the speed is now known
        assert await batcher.encode(["e"]) is not None  # ~10 ms: within the bound
        queued = [asyncio.ensure_future(batcher.encode([f"q{i}", f"r{i}"])) for i in range(3)]
        await asyncio.sleep(0)  # 6 texts queued, <= 60 ms each time: all admitted; the model thread
        # may have taken one batch (4) meanwhile, so at least 2 are still ahead of the next request
        with pytest.raises(Overloaded, match=r"max_latency_ms=100") as refused:
            await batcher.encode([f"z{i}" for i in range(10)])  # >= (2 + 10) x 10 ms: past 100
        assert refused.value.texts == 10
        await asyncio.gather(*queued)  # the admitted requests are still answered

    asyncio.run(run())
    batcher.close()


def test_a_model_failure_fails_that_batch_only() -> None:
    batcher = TextBatcher(Model(seconds_per_text=0), max_batch_size=8, max_latency_ms=10_000)

    async def run() -> None:
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.encode(["boom"])
        np.testing.assert_array_equal(await batcher.encode(["ok"]), expected(["ok"]))

    asyncio.run(run())
    batcher.close()


class SlowModel:
    """Takes 50 ms a call and records how many calls ran at once and each call's size."""

    def __init__(self) -> None:
        self.running = 0
        self.most_running = 0
        self.calls: list[int] = []
        self.guard = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self.guard:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.calls.append(len(texts))
        time.sleep(0.05)
        with self.guard:
            self.running -= 1
        return expected(texts)


def test_a_second_batch_goes_in_flight_only_when_a_full_batch_waits() -> None:
    """Light load: what queues behind a running batch waits for it and goes as one batch (two threads
    would split it and contend). A full batch waiting: it goes in flight beside the running one."""
    model = SlowModel()
    batcher = TextBatcher(model, max_batch_size=4, max_latency_ms=10_000, batches_in_flight=2)

    async def light() -> None:
        first = asyncio.ensure_future(batcher.encode(["a"]))
        await asyncio.sleep(0.02)  # "a" is in the model now
        await asyncio.gather(first, batcher.encode(["b"]), batcher.encode(["c"]))

    asyncio.run(light())
    assert model.most_running == 1 and model.calls == [1, 2]

    full = [[f"{chr(97 + i)}{j}" for j in range(4)] for i in range(2)]

    async def heavy() -> list[np.ndarray]:
        first = asyncio.ensure_future(batcher.encode(["x"]))
        await asyncio.sleep(0.02)
        return await asyncio.gather(first, *(batcher.encode(t) for t in full))

    for vectors, texts in zip(asyncio.run(heavy()), [["x"], *full], strict=True):
        np.testing.assert_array_equal(vectors, expected(texts))
    assert model.most_running == 2
    batcher.close()


def test_batches_in_flight_overlap_and_the_queue_estimate_counts_them() -> None:
    """With two batches in flight two model calls run at once; the learned speed is per text of the
    whole batcher (one batch's time / its texts / 2), so the bound admits what two threads drain."""
    model = SlowModel()
    batcher = TextBatcher(model, max_batch_size=4, max_latency_ms=10_000, batches_in_flight=2)

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(
            *(batcher.encode([f"{chr(97 + i)}{j}" for j in range(4)]) for i in range(6))
        )

    for i, vectors in enumerate(asyncio.run(run())):
        np.testing.assert_array_equal(vectors, expected([f"{chr(97 + i)}{j}" for j in range(4)]))
    assert model.most_running == 2
    per_text = batcher.expected_wait_s(1)
    assert 0.004 < per_text < 0.0075  # ~50 ms / 4 texts / 2 in flight
    batcher.close()
