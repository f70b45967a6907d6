"""benchmarks/embedding_sweep.py: requests with a planned share of cached texts, and the sweep's summary."""

from __future__ import annotations

import random

from benchmarks.embedding_load import Measured, sentences
from benchmarks.embedding_sweep import mixed_requests, summarize_sweep


def test_each_request_carries_exactly_the_planned_cached_texts_and_new_ones_never_repeat() -> None:
    rng, seen = random.Random(0), set[str]()
    hot = sentences(32, rng, seen)
    requests = mixed_requests(hot, count=5, batch=16, rate=0.75, rng=rng, seen=seen)
    new = [t for r in requests for t in r if t not in hot]
    assert all(len(r) == 16 and sum(t in hot for t in r) == 12 for r in requests)
    assert len(new) == len(set(new)) == 5 * 4


def _block(
    path: str, concurrency: int, rnd: int, texts: int, wall_s: float, foreign: float = 0.0
) -> Measured:
    cpu = {"own_cpu_s": 0.1, "server_cpu_s": 0.1, "foreign_cores": foreign}
    return Measured(path, "base64", concurrency, rnd, texts, wall_s, cpu, [wall_s / 2, wall_s / 2])


def test_sweep_summary_takes_quiet_rounds_and_compares_with_zero_hits() -> None:
    blocks = [
        _block("hit_rate=0", 1, 0, 128, 1.0),
        _block("hit_rate=0", 1, 1, 128, 4.0, foreign=1.0),  # a busy round: left out
        _block("hit_rate=100", 1, 0, 128, 0.1),
        _block("hit_rate=100", 1, 1, 128, 0.1),
    ]
    rows = {r["hit_rate_percent"]: r for r in summarize_sweep(blocks)}
    assert rows[0]["texts_per_s"]["value"] == 128 and rows[0]["texts_per_s"]["basis"] == "quiet 1/2"
    assert rows[100]["over_zero_hits"] == 10.0 and rows[100]["texts_per_request"] == 64
