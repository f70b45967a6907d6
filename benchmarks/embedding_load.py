"""Load generation and measurement for ``benchmarks.embedding_cache``: the texts, the /embed client, and
``Bench``, which runs every timed block against one server and records it as a ``Measured``.

The only part of the benchmark that talks to the server or runs the model; the summaries, targets,
tables and figure are computed afterwards from its blocks (``benchmarks.embedding_report``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from benchmarks.common import CpuMeter, RawHttpClient, closed_loop, latency_summary_ms, wait_for_quiet
from scripts.procs import BentoServer, metric_value

if TYPE_CHECKING:
    from benchmarks.embedding_cache import Params

FORMATS = ("float", "base64")


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
        cached: int | None = None,
    ) -> None:
        """One closed-loop run; every answer's ``cache_hits`` must be what was planned: all texts for
        ``hit``, ``cached`` per request when given (a hit-rate sweep), else none."""
        payloads = [body(texts, fmt) for texts in requests]
        calls: list[Callable[[], Awaitable[int]]] = [partial(post_embed, self.client, p) for p in payloads]
        model_before = await server_model_seconds(self.client)
        with CpuMeter(self.pids) as meter:
            result = await closed_loop(calls, concurrency)
        model_after = await server_model_seconds(self.client)
        served = [(texts, hits) for texts, hits in zip(requests, result.results, strict=True) if hits != SHED]
        expected = [
            cached if cached is not None else len(texts) if path == "hit" else 0 for texts, _ in served
        ]
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
