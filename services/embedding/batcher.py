"""The embedding model's own batcher: texts, not requests, are what a model call is made of.

Cache misses of concurrent requests are queued here and a model thread runs the model on up to
``max_batch_size`` texts at a time; while it runs, new misses queue, and the next call takes what has
queued (no timer: an idle model starts at once, a busy one batches what arrived meanwhile). With
``batches_in_flight`` > 1, that many threads take batches, but another batch goes in flight beside a
running one only when a full batch (``max_batch_size`` texts) waits: then, on a GPU, one batch tokenizes
on the CPU while another's forward pass runs. Under light load two threads only split small batches
and contend for the GIL: at one text per request, 8-32 clients, one thread encoded 9-21% more texts/s
than two taking batches eagerly, and two 28-45% more at 32 texts per request (H200 host,
benchmarks/results/embedding_vs_infinity_gpu_h200_dec02.json). It replaced
BentoML's ``batchable`` API for this service (docs/ARCHITECTURE.md): BentoML's dispatcher counts requests,
not texts, and reaching it took a JSON self-call per request, which cost more CPU than the model on
small requests.

A request is refused (``Overloaded``) only when the queue ahead of it, at the throughput the model has
shown, cannot be encoded within ``max_latency_ms``; a request never waits in the queue unbounded.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from services.embedding.lookup import Overloaded

Model = Callable[[list[str]], np.ndarray]


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop
    parts: list[np.ndarray] = field(default_factory=list)
    taken: int = 0  # texts already handed to the model (a job may span several model calls)


class TextBatcher:
    def __init__(
        self, model: Model, max_batch_size: int, max_latency_ms: int, batches_in_flight: int = 1
    ) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.batches_in_flight = batches_in_flight
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_texts = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._seconds_per_text: float | None = None  # measured on large batches; None until the first
        self._threads: list[threading.Thread] = []
        self._running = 0  # batches in the model now
        self._closed = False

    def expected_wait_s(self, texts: int) -> float:
        """How long ``texts`` more would take to come out, at the model's measured speed."""
        per_text = self._seconds_per_text or 0.0
        return (self._queued_texts + texts) * per_text

    async def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` in order (float32), computed in batches with other requests' texts."""
        loop = asyncio.get_running_loop()
        job = _Job(list(texts), loop.create_future(), loop)
        with self._lock:
            if self.expected_wait_s(len(texts)) * 1000 > self.max_latency_ms:
                raise Overloaded(self.max_latency_ms, len(texts))
            self._queue.append(job)
            self._queued_texts += len(texts)
            self._start()
            self._wake.notify()
        return await job.future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()

    def _start(self) -> None:
        if not self._threads:
            for i in range(self.batches_in_flight):
                thread = threading.Thread(target=self._run, name=f"embedding-model-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _may_take(self) -> bool:
        """An idle model takes any queue; another batch joins a running one only when a full one waits."""
        if not self._queue:
            return False
        return self._running == 0 or self._queued_texts >= self.max_batch_size

    def _take(self) -> list[tuple[_Job, int, int]]:
        """(job, start, end) slices of queued jobs, up to ``max_batch_size`` texts, oldest first."""
        batch: list[tuple[_Job, int, int]] = []
        room = self.max_batch_size
        while self._queue and room:
            job = self._queue[0]
            start = job.taken
            end = min(len(job.texts), start + room)
            batch.append((job, start, end))
            job.taken = end
            room -= end - start
            self._queued_texts -= end - start
            if job.taken == len(job.texts):
                self._queue.popleft()
        return batch

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self._may_take():
                    self._wake.wait()
                if self._closed:
                    return
                batch = self._take()
                self._running += 1
            texts = [t for job, start, end in batch for t in job.texts[start:end]]
            started = time.perf_counter()
            try:
                vectors = self.model(texts)
            except Exception as exc:  # the model failed: every request in the batch gets the error
                for job, _, _ in batch:
                    job.loop.call_soon_threadsafe(_fail, job, exc)
                continue
            finally:
                with self._lock:
                    self._running -= 1
            self._learn(time.perf_counter() - started, len(texts))
            offset = 0
            for job, start, end in batch:
                job.parts.append(vectors[offset : offset + end - start])
                offset += end - start
                if end == len(job.texts):
                    job.loop.call_soon_threadsafe(_finish, job)

    def _learn(self, seconds: float, texts: int) -> None:
        """Seconds per text of batches at least half full, smoothed. A queue is encoded in such batches;
        small batches cost more per text, and learning from them would refuse a burst that the model
        can in fact absorb (before the first such batch nothing is refused). The queue drains
        ``batches_in_flight`` times as fast as one batch's own time says: so it does once the queue is
        long, the only time the bound refuses (a second batch goes in flight only when a full one
        waits). A half-full batch that ran alone under lighter load is counted as overlapped too."""
        if texts < max(1, self.max_batch_size // 2):
            return
        sample = seconds / texts / self.batches_in_flight
        previous = self._seconds_per_text
        self._seconds_per_text = sample if previous is None else 0.8 * previous + 0.2 * sample


def _finish(job: _Job) -> None:
    if not job.future.done():
        job.future.set_result(np.concatenate(job.parts) if len(job.parts) > 1 else job.parts[0])


def _fail(job: _Job, exc: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
