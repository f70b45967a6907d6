"""The embedding cache's hit-rate sweep: texts/s and request latency when a share of each request's texts
is already cached (``python -m benchmarks embedding_cache --hit-rates 0 25 50 75 90 100``).

Real traffic is neither all misses nor all hits. Each request here carries ``batch_size`` texts of which
``round(rate * batch_size)`` were embedded before (drawn from the warm-up texts) and the rest are new, so
the server looks every text up and sends only the new ones through the batched model. Blocks run on
the same server and client as the rest of ``benchmarks.embedding_cache`` (``embedding_load.Bench``);
rounds alternate the rates, so drifting load from other jobs touches every rate alike.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import BarPanel, format_table, latency_summary_ms, save_bar_panels, wait_for_quiet
from benchmarks.embedding_load import Bench, Measured, chunks, sentences
from benchmarks.embedding_report import pick, quiet

FORMAT = "base64"  # the cheaper wire format; the format comparison is the main run's job


def mixed_requests(
    hot: Sequence[str], count: int, batch: int, rate: float, rng: random.Random, seen: set[str]
) -> list[list[str]]:
    """``count`` requests of ``batch`` texts, ``round(rate * batch)`` of each from ``hot`` (cached), the
    rest never seen before, shuffled within the request."""
    cached = round(rate * batch)
    out = []
    for _ in range(count):
        texts = rng.sample(list(hot), cached) + sentences(batch - cached, rng, seen)
        rng.shuffle(texts)
        out.append(texts)
    return out


async def run_sweep(bench: Bench, hit_rates: Sequence[float], requests: int) -> None:
    """Warm up (model, batcher, the cached texts), then every rate at every concurrency, ``rounds`` times."""
    p, b = bench.params, bench.params.batch_size
    hot = sentences(max(b * 4, p.warmup_requests * b), bench.rng, bench.seen)
    for texts in chunks(hot, b):
        await bench.load("miss", FORMAT, 1, -1, [texts], record=False)
    for concurrency in sorted(p.concurrency):
        for rnd in range(p.rounds):
            for rate in hit_rates:
                bench.load_at_start.append(wait_for_quiet(bench.pids, timeout_s=p.quiet_wait_s))
                batch = mixed_requests(hot, requests, b, rate / 100, bench.rng, bench.seen)
                await bench.load(
                    f"hit_rate={rate:g}", FORMAT, concurrency, rnd, batch, cached=round(rate / 100 * b)
                )


def summarize_sweep(blocks: Sequence[Measured]) -> list[dict[str, Any]]:
    """Per concurrency and hit rate: texts/s (median over rounds, quiet ones when any), request latency
    percentiles pooled over the rounds, and texts/s relative to the 0% rate at the same concurrency."""
    rows = []
    cells = dict.fromkeys((m.concurrency, m.path) for m in blocks if m.path.startswith("hit_rate="))
    for concurrency, path in cells:
        runs = [m for m in blocks if (m.concurrency, m.path) == (concurrency, path)]
        rows.append({
            "concurrency": concurrency,
            "hit_rate_percent": float(path.split("=")[1]),
            "texts_per_s": pick([(m.texts_per_s, quiet(m)) for m in runs]),
            "request_latency_ms": latency_summary_ms([s for m in runs for s in m.latencies_s]),
            "texts_per_request": runs[0].texts // max(len(runs[0].latencies_s), 1),
            "shed": sum(m.shed for m in runs),
        })  # fmt: skip
    for row in rows:
        zero = next(
            (r for r in rows if r["concurrency"] == row["concurrency"] and r["hit_rate_percent"] == 0), None
        )
        row["over_zero_hits"] = (
            round(row["texts_per_s"]["value"] / zero["texts_per_s"]["value"], 3) if zero else None
        )
    return rows


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["clients", "hit rate", "texts/s", "vs 0% hits", "request p50 ms", "request p99 ms", "basis"]
    body = [[r["concurrency"], f"{r['hit_rate_percent']:g}%", r["texts_per_s"]["value"], r["over_zero_hits"],
             r["request_latency_ms"]["p50"], r["request_latency_ms"]["p99"], r["texts_per_s"]["basis"]] for r in rows]  # fmt: skip
    return format_table(head, body)


def plot_sweep(path: Path, rows: Sequence[dict[str, Any]], title: str) -> Path:
    label = "c={concurrency} {hit_rate_percent:g}%".format_map
    panels = [
        BarPanel("texts/s by hit rate", "texts/s", {label(r): r["texts_per_s"]["value"] for r in rows}),
        BarPanel("request latency p50", "ms", {label(r): r["request_latency_ms"]["p50"] for r in rows}),
        BarPanel("request latency p99", "ms", {label(r): r["request_latency_ms"]["p99"] for r in rows}),
    ]
    return save_bar_panels(path, panels, title, columns=3)
