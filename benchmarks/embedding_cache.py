"""Embedding-cache benchmark (issue 2): texts/s at 0% and 100% hit rate over HTTP, single-text cache-hit
latency, and raw sentence-transformers ``encode`` on the same texts, in one run on one machine.

    python -m benchmarks.embedding_cache [--batch-size 64] [--concurrency 1 4] [--rounds 4] [--target M:C]

It serves ``services.embedding.service:EmbeddingCache`` with ``bentoml serve`` (``tests.procs.BentoServer``;
disk cache in a fresh temporary directory) and drives it from this process over loopback: asyncio +
httpx keep-alive clients for throughput, and for single-text latency both httpx and a minimal HTTP/1.1
client (``common.RawHttpClient``), which separates the server's time from the client's. The model is
loaded here too for the raw ``model.encode(texts, batch_size=B)`` baseline, timed while the server is
idle, just before the HTTP run on the same texts.

Server, client and baseline share the machine's cores, and so may other people's jobs: every block
records their load (``common.CpuMeter``), waits a while for a quiet machine before it starts, and
summaries use the quiet rounds when there are any (the ``basis`` of each value says which).
Writes ``benchmarks/results/embedding_cache.{json,png}`` and prints the tables.

Targets (issue 2): 100%-hit texts/s >= 20x 0%-hit texts/s; 0%-hit texts/s >= 0.8x raw ``encode`` at the
same batch size; p50 of a single-text cache hit <= 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop

from benchmarks.common import (
    RESULTS_DIR,
    BarPanel,
    CpuMeter,
    RawHttpClient,
    closed_loop,
    format_table,
    latency_summary_ms,
    percentile,
    run_metadata,
    save_bar_panels,
    wait_for_quiet,
    write_result,
)
from tests.procs import BentoServer, metric_value

NAME = "embedding_cache"
TARGET = "services.embedding.service:EmbeddingCache"
FORMATS = ("float", "base64")
HIT_RATIO_TARGET = 20.0
MISS_VS_RAW_TARGET = 0.8
HIT_P50_TARGET_MS = 2.0
QUIET_CORES = 0.25  # a block counts as quiet when other jobs kept at most this many cores busy
PACKAGES = ("torch", "bentoml", "sentence-transformers", "transformers", "httpx", "numpy", "uvloop")


# --- workload ------------------------------------------------------------------------------------
# fmt: off
_SUBJECTS = (
    "the new release", "our support team", "a regional bank", "the city council", "most customers",
    "the research group", "a small startup", "the mobile app", "this quarterly report", "the hospital",
    "an independent auditor", "the delivery driver", "the weather service", "a local school",
    "the product manager", "several engineers", "the online store", "the museum", "a freight company",
)
_VERBS = (
    "announced", "reviewed", "delayed", "improved", "rejected", "published", "tested", "explained",
    "replaced", "measured", "questioned", "approved", "shipped", "described", "cancelled", "expanded",
)
_OBJECTS = (
    "the pricing plan", "a detailed summary", "the payment system", "new safety rules",
    "the annual budget", "a faster search feature", "the login page", "several open positions",
    "the train schedule", "a recall of older models", "the privacy policy", "customer feedback",
    "the data center migration", "a shorter onboarding process", "the holiday opening hours",
)
_TAILS = (
    "after a long meeting on Tuesday", "because demand grew faster than expected",
    "for users in northern regions", "without telling the press", "despite several complaints",
    "before the end of the month", "to reduce waiting times", "with help from outside experts",
    "while prices kept rising", "in response to recent storms", "as part of a wider plan",
    "so that fewer orders arrive late", "during the first week of spring", "at a very short notice",
)
# fmt: on


def sentences(count: int, rng: random.Random, seen: set[str]) -> list[str]:
    """``count`` new sentences of 10-25 words, none in ``seen`` (which they are added to)."""
    out: list[str] = []
    while len(out) < count:
        words: list[str] = []
        target = rng.randint(10, 25)
        while len(words) < target:
            words += ["and"] if words else []
            words += f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}".split()
            words += rng.choice(_TAILS).split()
            if rng.random() < 0.3:
                words.append(f"{rng.randint(2, 990)}")  # numbers, as real text has them
        text = " ".join(words[:target])
        text = text[0].upper() + text[1:] + "."
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def chunks(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


# --- measurements --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """One timed block: a load run over HTTP (``path`` miss/hit) or a raw ``encode`` (raw/raw_chunks)."""

    path: str
    encoding_format: str
    concurrency: int
    round: int
    texts: int
    wall_s: float
    cpu: dict[str, float]
    latencies_s: list[float] = field(default_factory=list)
    server_model_s: float | None = None  # the server's own model time during the run (from /metrics)
    shed: int = 0  # requests refused with 503 (BentoML sheds a miss predicted to exceed max_latency_ms)

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.wall_s

    @property
    def cpu_ms_per_text(self) -> float:
        return (self.cpu["own_cpu_s"] + self.cpu["server_cpu_s"]) * 1e3 / self.texts

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_s"}
        out |= {"texts_per_s": round(self.texts_per_s, 1), "cpu_ms_per_text": round(self.cpu_ms_per_text, 3)}
        if self.latencies_s:
            out["request_latency_ms"] = latency_summary_ms(self.latencies_s)
        return out


def body(texts: Sequence[str], encoding_format: str) -> bytes:
    return orjson.dumps({"texts": list(texts), "encoding_format": encoding_format})


SHED = -1  # what post_embed returns for a 503


async def post_embed(client: httpx.AsyncClient, payload: bytes) -> int:
    """POST /embed; returns ``cache_hits``, read from the body's tail (the client never parses the
    vectors, which would take CPU from the server on the same cores), or SHED for a 503."""
    response = await client.post("/embed", content=payload, headers={"content-type": "application/json"})
    if response.status_code == 503:
        return SHED
    if response.status_code != 200:
        raise RuntimeError(f"/embed answered {response.status_code}: {response.text[:300]}")
    raw = response.content
    at = raw.rfind(b'"cache_hits":')
    if at < 0:
        return int(orjson.loads(raw)["cache_hits"])
    return int(raw[at + 13 :].rstrip(b"} \n"))


async def server_model_seconds(client: httpx.AsyncClient) -> float | None:
    return metric_value((await client.get("/metrics")).text, "infstack_embedding_model_seconds_sum")


class Bench:
    """One server, one keep-alive client, the model in this process, and everything measured so far."""

    def __init__(self, server: BentoServer, model: Any, params: Params) -> None:
        self.server, self.model, self.params = server, model, params
        self.pids = [server.proc.pid] if server.proc else []
        self.rng, self.seen = random.Random(params.seed), set[str]()
        self.blocks: list[Measured] = []
        # (client, format or "livez") -> one record per round: latencies, other jobs' load, CPU per request
        self.single: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.load_at_start: list[float] = []  # other jobs' cores before each block
        limits = httpx.Limits(max_connections=max(params.concurrency), max_keepalive_connections=64)
        self.client = httpx.AsyncClient(base_url=server.url, limits=limits, timeout=300)

    async def load(
        self,
        path: str,
        fmt: str,
        concurrency: int,
        rnd: int,
        requests: Sequence[list[str]],
        record: bool = True,
    ) -> None:
        payloads = [body(texts, fmt) for texts in requests]
        calls: list[Callable[[], Awaitable[int]]] = [partial(post_embed, self.client, p) for p in payloads]
        model_before = await server_model_seconds(self.client)
        with CpuMeter(self.pids) as meter:
            result = await closed_loop(calls, concurrency)
        model_after = await server_model_seconds(self.client)
        served = [(texts, hits) for texts, hits in zip(requests, result.results, strict=True) if hits != SHED]
        expected = [len(texts) if path == "hit" else 0 for texts, _ in served]
        if [hits for _, hits in served] != expected:
            raise RuntimeError(f"{path} run: cache_hits {result.results[:6]}... expected {expected[:6]}...")
        busy = model_after - model_before if model_before is not None and model_after is not None else None
        shed = [texts for texts, hits in zip(requests, result.results, strict=True) if hits == SHED]
        for texts in shed:  # embed them now, unmeasured, so the hit run that follows finds every text
            while await post_embed(self.client, body(texts, fmt)) == SHED:
                await asyncio.sleep(1)
        if record:
            done = sum(len(texts) for texts, _ in served)  # texts/s counts answered texts only
            self.blocks.append(
                Measured(
                    path=path,
                    encoding_format=fmt,
                    concurrency=concurrency,
                    round=rnd,
                    texts=done,
                    wall_s=result.wall_s,
                    cpu=meter.to_json(),
                    latencies_s=result.latencies_s,
                    server_model_s=busy,
                    shed=len(shed),
                )
            )

    def encode(self, texts: list[str], fmt: str, concurrency: int, rnd: int, per_request: bool) -> None:
        """Raw ``encode`` while the server is idle: all texts in one call (sentence-transformers sorts
        them by length over the whole list), or one call per request (what the server's model gets)."""
        b = self.params.batch_size
        with CpuMeter(self.pids) as meter:
            if per_request:
                for chunk in chunks(texts, b):
                    self.model.encode(chunk, batch_size=b, convert_to_numpy=True)
            else:
                self.model.encode(texts, batch_size=b, convert_to_numpy=True)
        path = "raw_chunks" if per_request else "raw"
        self.blocks.append(Measured(path, fmt, concurrency, rnd, len(texts), meter.wall_s, meter.to_json()))

    async def run(self) -> None:
        p, b = self.params, self.params.batch_size
        # Warm-up at concurrency 1: the model in both processes, connections, SQLite, and the batcher's
        # own training (its first ~11 calls). The warm-up texts stay cached: the single-text hits.
        hot = sentences(p.warmup_requests * b, self.rng, self.seen)
        self.model.encode(hot[:b], batch_size=b)
        warm = chunks(hot, b)
        for i, texts in enumerate(warm):
            await self.load("miss", FORMATS[i % 2], 1, -1, [texts], record=False)
        for fmt in FORMATS:
            await self.load("hit", fmt, 1, -1, warm, record=False)
        # Lowest concurrency first: BentoML's batcher learns its wait from recent batches, and after
        # concurrent load it holds lone requests back (measured separately below, as "after load").
        # Within a level, rounds alternate formats and pair each HTTP run with a raw run on the same
        # texts just before it, so drifting load from other jobs hits both sides of each ratio alike.
        for concurrency in sorted(p.concurrency):
            for rnd in range(p.rounds):
                for fmt in FORMATS:
                    self.load_at_start.append(wait_for_quiet(self.pids, timeout_s=p.quiet_wait_s))
                    texts = sentences(p.miss_texts, self.rng, self.seen)
                    self.encode(texts, fmt, concurrency, rnd, per_request=False)
                    if concurrency == 1:
                        self.encode(texts, fmt, concurrency, rnd, per_request=True)
                    requests = chunks(texts, b)
                    await self.load("miss", fmt, concurrency, rnd, requests)
                    repeated = [requests[i % len(requests)] for i in range(p.hit_requests)]
                    await self.load("hit", fmt, concurrency, rnd, repeated)
        if max(p.concurrency) > 1:
            texts = sentences(p.miss_texts, self.rng, self.seen)
            await self.load("miss_after_load", FORMATS[-1], 1, 0, chunks(texts, b))
        for rnd in range(p.rounds):
            await self.latency_round(rnd, hot)

    async def latency_round(self, rnd: int, hot: list[str]) -> None:
        """Single cached texts, one request at a time (no queueing), and GET /livez as the HTTP floor;
        each with httpx and with a minimal client, to tell the server's time from the client's."""
        self.load_at_start.append(wait_for_quiet(self.pids, timeout_s=self.params.quiet_wait_s))
        count = self.params.single_requests
        async with RawHttpClient("127.0.0.1", self.server.port) as raw:

            async def via_raw(payload: bytes) -> int:
                status, content = await raw.request("POST", "/embed", payload)
                if status != 200:
                    raise RuntimeError(f"/embed answered {status}: {content[:300]!r}")
                return int(orjson.loads(content)["cache_hits"])

            posts: dict[str, Callable[[bytes], Awaitable[int]]] = {
                "httpx": partial(post_embed, self.client),
                "minimal": via_raw,
            }
            livez: dict[str, Callable[[int], Awaitable[object]]] = {
                "httpx": lambda i: self.client.get("/livez"),
                "minimal": lambda i: raw.request("GET", "/livez"),
            }
            calls: dict[tuple[str, str], Callable[[int], Awaitable[object]]] = {}
            for fmt in FORMATS:
                payloads = [body([t], fmt) for t in hot]
                for client, post in posts.items():

                    async def one(
                        i: int,
                        post: Callable[[bytes], Awaitable[int]] = post,
                        payloads: list[bytes] = payloads,
                    ) -> None:
                        if await post(payloads[i % len(payloads)]) != 1:
                            raise RuntimeError("a single-text request missed the cache")

                    calls[client, fmt] = one
            calls |= {(client, "livez"): call for client, call in livez.items()}
            for (client, what), call in calls.items():
                await self.sequential(call, 50)
                with CpuMeter(self.pids) as meter:
                    latencies = await self.sequential(call, count)
                self.single.setdefault((client, what), []).append(
                    {
                        "round": rnd,
                        "latencies_s": latencies,
                        "foreign_cores": meter.foreign_cores,
                        "server_cpu_ms_per_request": round(meter.server_s * 1e3 / count, 3),
                        "client_cpu_ms_per_request": round(meter.own_s * 1e3 / count, 3),
                    }
                )

    @staticmethod
    async def sequential(call: Callable[[int], Awaitable[object]], count: int) -> list[float]:
        latencies = []
        for i in range(count):
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)
        return latencies


# --- summary -------------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summarize(blocks: Sequence[Measured]) -> list[dict[str, Any]]:
    """Per format and concurrency. Each value is a median over rounds, taken over the quiet rounds when
    there are any (see ``pick``); ratios are formed within a round (paired blocks), then summarized."""
    configs = dict.fromkeys((m.encoding_format, m.concurrency) for m in blocks if m.path == "miss")
    rows = []
    for fmt, c in configs:
        by_path: dict[str, list[Measured]] = {}
        for m in blocks:
            if (m.encoding_format, m.concurrency) == (fmt, c):
                by_path.setdefault(m.path, []).append(m)
        raw, chunked, miss, hit = (by_path.get(k, []) for k in ("raw", "raw_chunks", "miss", "hit"))
        rows.append(
            {
                "encoding_format": fmt,
                "concurrency": c,
                "raw_texts_per_s": pick([(r.texts_per_s, quiet(r)) for r in raw]),
                "raw_per_request_texts_per_s": pick([(r.texts_per_s, quiet(r)) for r in chunked])
                if chunked
                else None,
                "miss_texts_per_s": pick([(m.texts_per_s, quiet(m)) for m in miss]),
                "hit_texts_per_s": pick([(h.texts_per_s, quiet(h)) for h in hit]),
                "hit_over_miss": pick(
                    [(h.texts_per_s / m.texts_per_s, quiet(h, m)) for h, m in zip(hit, miss, strict=True)]
                ),
                "miss_over_raw": pick(
                    [(m.texts_per_s / r.texts_per_s, quiet(m, r)) for m, r in zip(miss, raw, strict=True)]
                ),
                "miss_over_raw_per_request": pick(
                    [(m.texts_per_s / r.texts_per_s, quiet(m, r)) for m, r in zip(miss, chunked, strict=True)]
                )
                if chunked
                else None,
                # Diagnostics: CPU seconds (server + client, or the raw process) per text, and how much of a
                # miss run's wall time the server's model was busy (the rest is serving overhead and waits).
                "cpu_ms_per_text": {
                    k: round(median([m.cpu_ms_per_text for m in v]), 3) for k, v in by_path.items()
                },
                "server_model_share_of_miss_wall": pick(
                    [(m.server_model_s / m.wall_s, quiet(m)) for m in miss if m.server_model_s is not None]
                ),
                "miss_requests_shed": sum(m.shed for m in miss),
                "miss_request_p50_ms": round(median([percentile(m.latencies_s, 50) for m in miss]) * 1e3, 1),
                "hit_request_p50_ms": round(median([percentile(m.latencies_s, 50) for m in hit]) * 1e3, 2),
            }
        )
    return rows


def quiet(*blocks: Measured) -> bool:
    return all(b.cpu["foreign_cores"] <= QUIET_CORES for b in blocks)


def pick(samples: Sequence[tuple[float, bool]]) -> dict[str, Any] | None:
    """``value``: the median over quiet rounds if any round was quiet, else over all rounds (``basis``
    says which), so other people's jobs on the shared cores do not decide the result."""
    if not samples:
        return None
    calm = [v for v, q in samples if q]
    chosen = calm or [v for v, _ in samples]
    return {
        "value": round(median(chosen), 3),
        "basis": f"quiet {len(calm)}/{len(samples)}" if calm else f"all {len(samples)} (none quiet)",
        "all_rounds": [round(v, 3) for v, _ in samples],
        "quiet_rounds": [q for _, q in samples],
    }


def after_load(blocks: Sequence[Measured]) -> dict[str, Any] | None:
    """The concurrency-1 miss run right after concurrent load, against the same format's earlier ones."""
    probe = [m for m in blocks if m.path == "miss_after_load"]
    if not probe:
        return None
    (m,) = probe
    before = [
        b for b in blocks if (b.path, b.concurrency, b.encoding_format) == ("miss", 1, m.encoding_format)
    ]
    return {
        "encoding_format": m.encoding_format,
        "texts_per_s": round(m.texts_per_s, 1),
        "before_load_texts_per_s": pick([(b.texts_per_s, quiet(b)) for b in before]),
        "server_model_share_of_wall": round(m.server_model_s / m.wall_s, 3) if m.server_model_s else None,
        "request_latency_ms": latency_summary_ms(m.latencies_s),
        "other_jobs_cores": m.cpu["foreign_cores"],
        "shed": m.shed,
    }


def single_hit_summary(bench: Bench) -> dict[str, Any]:
    """Per client: latency per format (and GET /livez), pooled over the quiet rounds if any, else all."""
    out: dict[str, Any] = {}
    for (client, what), rounds in bench.single.items():
        calm = [r for r in rounds if r["foreign_cores"] <= QUIET_CORES]
        chosen = calm or rounds
        summary = latency_summary_ms([x for r in chosen for x in r["latencies_s"]])
        summary["rounds_p50_ms"] = [round(percentile(r["latencies_s"], 50) * 1e3, 3) for r in rounds]
        summary["basis"] = f"quiet {len(calm)}/{len(rounds)}" if calm else f"all {len(rounds)} (none quiet)"
        for key in ("server_cpu_ms_per_request", "client_cpu_ms_per_request"):
            summary[key] = round(median([r[key] for r in chosen]), 3)
        out.setdefault(client, {})[what] = summary
    return out


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target where it applies, from wall-clock rates as the issue defines them."""
    targets: list[dict[str, Any]] = []

    def add(name: str, where: str, value: float, basis: str, threshold: float, at_least: bool) -> None:
        met = value >= threshold if at_least else value <= threshold
        targets.append({"target": name, "where": where, "value": value, "basis": basis, "met": met})

    for row in result["summary"]:
        where = f"{row['encoding_format']}, {row['concurrency']} client(s)"
        for name, key, threshold in (
            (f"100%-hit texts/s >= {HIT_RATIO_TARGET:g}x 0%-hit", "hit_over_miss", HIT_RATIO_TARGET),
            (f"0%-hit texts/s >= {MISS_VS_RAW_TARGET:g}x raw encode", "miss_over_raw", MISS_VS_RAW_TARGET),
        ):
            add(name, where, row[key]["value"], row[key]["basis"], threshold, True)
    for client, by_what in result["single_hit"].items():
        for fmt in FORMATS:
            s = by_what[fmt]
            add(
                f"1-text hit p50 <= {HIT_P50_TARGET_MS:g} ms",
                f"{fmt}, {client} client",
                s["p50"],
                s["basis"],
                HIT_P50_TARGET_MS,
                False,
            )
    return targets


def plot(path: Path, result: dict[str, Any], title: str) -> Path:
    summary, single = result["summary"], result["single_hit"]
    label = "{encoding_format} c={concurrency}".format_map
    throughput = {}
    for row in summary:
        for key, short in (
            ("raw_texts_per_s", "raw"),
            ("miss_texts_per_s", "0%"),
            ("hit_texts_per_s", "100%"),
        ):
            throughput[f"{short} {label(row)}"] = row[key]["value"]
    latency = {
        f"{what} {client}": s["p50"] for client, by_what in single.items() for what, s in by_what.items()
    }
    return save_bar_panels(
        path,
        [
            BarPanel("Throughput, 64-text requests", "texts/s (log)", throughput, log_scale=True),
            BarPanel(
                "100%-hit / 0%-hit texts/s",
                "ratio",
                {label(r): r["hit_over_miss"]["value"] for r in summary},
                {f"target {HIT_RATIO_TARGET:g}x": HIT_RATIO_TARGET},
            ),
            BarPanel(
                "0%-hit / raw encode texts/s",
                "ratio",
                {label(r): r["miss_over_raw"]["value"] for r in summary},
                {f"target {MISS_VS_RAW_TARGET:g}": MISS_VS_RAW_TARGET},
            ),
            BarPanel(
                "1 request at a time: p50 latency",
                "ms",
                latency,
                {f"target {HIT_P50_TARGET_MS:g} ms": HIT_P50_TARGET_MS},
            ),
        ],
        suptitle=title,
    )


def report(result: dict[str, Any]) -> str:
    b, rounds = result["params"]["batch_size"], result["params"]["rounds"]

    def v(stat: dict[str, Any] | None, fmt: str = "{:,.0f}") -> str:
        return "-" if stat is None else fmt.format(stat["value"])

    throughput = format_table(
        [
            "format",
            "clients",
            "raw encode",
            f"raw, {b}/call",
            "0% hit",
            "100% hit",
            "hit/miss",
            "miss/raw",
            "model busy",
            "miss 503s",
            "CPU ms/text raw|miss|hit",
            "quiet rounds",
        ],
        [
            [
                r["encoding_format"],
                r["concurrency"],
                v(r["raw_texts_per_s"]),
                v(r["raw_per_request_texts_per_s"]),
                v(r["miss_texts_per_s"]),
                v(r["hit_texts_per_s"]),
                v(r["hit_over_miss"], "{:.0f}x"),
                v(r["miss_over_raw"], "{:.2f}"),
                v(r["server_model_share_of_miss_wall"], "{:.0%}"),
                r["miss_requests_shed"],
                " | ".join(f"{r['cpu_ms_per_text'][k]:.2f}" for k in ("raw", "miss", "hit")),
                r["miss_over_raw"]["basis"],
            ]
            for r in result["summary"]
        ],
    )
    latency = format_table(
        [
            "one request at a time",
            "client",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "server CPU ms",
            "client CPU ms",
            "rounds",
        ],
        [
            [
                f"1-text cache hit, {what}" if what != "livez" else "GET /livez (floor)",
                client,
                s["p50"],
                s["p90"],
                s["p99"],
                s["server_cpu_ms_per_request"],
                s["client_cpu_ms_per_request"],
                s["basis"],
            ]
            for client, by_what in result["single_hit"].items()
            for what, s in by_what.items()
        ],
    )
    verdicts = format_table(
        ["target", "where", "value", "rounds", "met"],
        [
            [t["target"], t["where"], t["value"], t["basis"], "yes" if t["met"] else "NO"]
            for t in result["targets"]
        ],
    )
    lines = [
        f"texts/s, {b} texts per request, median of {rounds} rounds (quiet rounds when there are any: other "
        f"jobs <= {QUIET_CORES} cores)",
        throughput,
        "",
        latency,
        "",
        verdicts,
    ]
    if probe := result["miss_after_load"]:
        before = probe["before_load_texts_per_s"]
        lines += [
            "",
            f"0% hit, 1 client, right after concurrent load ({probe['encoding_format']}): "
            f"{probe['texts_per_s']:,.0f} texts/s (before: {v(before)}), model busy "
            f"{probe['server_model_share_of_wall']:.0%} of the time, other jobs {probe['other_jobs_cores']} cores",
        ]
    lines += ["", f"runtime {result['runtime_s']:.0f} s"]
    return "\n".join(lines)


# --- entry point ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Params:
    batch_size: int = 64
    concurrency: tuple[int, ...] = (1, 4)
    miss_texts: int = 384
    hit_requests: int = 100
    single_requests: int = 500
    rounds: int = 4
    warmup_requests: int = 12
    quiet_wait_s: float = 20.0
    seed: int = 0
    target: str = TARGET
    results_dir: Path = RESULTS_DIR


def parse_args(argv: Sequence[str] | None = None) -> Params:
    d = Params()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--batch-size", type=int, default=d.batch_size, help="texts per request and per raw encode batch")
    add("--concurrency", type=int, nargs="+", default=list(d.concurrency), help="concurrent clients")
    add("--miss-texts", type=int, default=d.miss_texts, help="new texts per 0%%-hit run")
    add("--hit-requests", type=int, default=d.hit_requests, help="requests per 100%%-hit run")
    add(
        "--single-requests", type=int, default=d.single_requests, help="single-text hits per round and format"
    )
    add("--rounds", type=int, default=d.rounds, help="repetitions of every run")
    add("--warmup-requests", type=int, default=d.warmup_requests, help="miss requests before measuring")
    add(
        "--quiet-wait-s",
        type=float,
        default=d.quiet_wait_s,
        help="longest wait for other jobs before a block",
    )
    add("--seed", type=int, default=d.seed)
    add("--target", default=d.target, help="service to serve (module:Class), e.g. a variant under test")
    add("--results-dir", type=Path, default=d.results_dir, help="where the JSON and PNG go")
    args = vars(parser.parse_args(argv))
    return Params(**args | {"concurrency": tuple(args["concurrency"])})


async def measure(server: BentoServer, model: Any, params: Params) -> Bench:
    bench = Bench(server, model, params)
    async with bench.client:
        await bench.run()
    return bench


def main(argv: Sequence[str] | None = None) -> None:
    params = parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = run_metadata(NAME, PACKAGES)
    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as tmp:
        # The server inherits this process's environment, so both read the same settings.
        env = {"INFSTACK_CACHE__DISK_PATH": str(Path(tmp) / "cache.sqlite3")}
        os.environ.update(env, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        import torch

        from services.embedding.model import load_sentence_model
        from services.settings import load_settings

        settings = load_settings()
        server = BentoServer(params.target, env, Path(tmp) / "server.log").start()
        try:
            server_start_s = time.perf_counter() - started
            model = load_sentence_model(settings.embedding.model_id, settings.embedding.device)
            bench = uvloop.run(measure(server, model, params))
        except BaseException:
            print(server.log_tail())
            raise
        finally:
            server.stop()
    result |= {
        "target": params.target,
        "settings": settings.model_dump(mode="json"),
        "env": env,
        "client": "httpx.AsyncClient on uvloop, HTTP/1.1 keep-alive to 127.0.0.1, in the benchmark process",
        "torch_threads_benchmark_process": torch.get_num_threads(),
        "params": asdict(params) | {"results_dir": str(params.results_dir), "words_per_text": [10, 25]},
        "server_start_s": round(server_start_s, 1),
        "other_jobs_cores_at_block_start": [round(x, 3) for x in bench.load_at_start],
        "summary": summarize(bench.blocks),
        "miss_after_load": after_load(bench.blocks),
        "single_hit": single_hit_summary(bench),
        "blocks": [m.to_json() for m in bench.blocks],
    }
    result["targets"] = evaluate(result)
    result["runtime_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    json_path = write_result(NAME, result, params.results_dir)
    machine, commit = result["machine"], (result["git"]["commit"] or "?")[:10]
    title = (
        f"embedding cache, {params.batch_size} texts/request, {machine['cpu_model']}, {machine['cpu_cores']} "
        f"cores, commit {commit}{' (dirty tree)' if result['git']['dirty'] else ''}"
    )
    plot(json_path.with_suffix(".png"), result, title)
    print(report(result))
    print(f"\nwrote {json_path} and {json_path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
