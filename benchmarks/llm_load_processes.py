"""benchmarks/llm_load.py's closed loop spread over several client processes.

Why: one asyncio client process tops out near one core. Alone against a server that answers at once
(2-core CPU), it took ~900 streamed answers/s at 100% of its core, with a TTFT p50 of 55 ms that was
all its own. A cache hit costs the server about a millisecond, so a single client process adds its own
queueing to every hit's TTFT and caps the requests/s of a cached workload. Raw vLLM's answers take
hundreds of ms each, so its figures barely move. Both targets are measured with the same client.

The loop stays one closed loop: ``max_concurrency`` clients, split over the processes, each take the
next prompt from one shared counter. So the requests go out in the order that one process with that many
clients would send them (a Zipf sequence's first sightings stay where they are), and the load ends when
the last answer is in. Times are ``time.perf_counter`` (CLOCK_MONOTONIC on Linux: one clock for every
process); the duration runs from the first process's first send to the last answer.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks.llm_load import (
    Load,
    RequestResult,
    completion_payload,
    per_prompt_lengths,
    run_async,
    stream_completion,
)


def split_clients(clients: int, processes: int) -> list[int]:
    """``clients`` spread over at most ``processes`` processes as evenly as possible, none empty."""
    processes = max(1, min(processes, clients))
    return [clients // processes + (i < clients % processes) for i in range(processes)]


def run_load_processes(
    base_url: str, model: str, prompts: Sequence[list[int] | str], output_len: int | Sequence[int], load: Load,
    temperature: float,
) -> tuple[float, list[RequestResult]]:  # fmt: skip
    """``run_load`` for a closed-loop load (``request_rate`` inf) in ``load.client_processes`` processes:
    the duration and each request's result, in prompt order."""
    if not math.isinf(load.request_rate):
        raise ValueError("client processes run closed-loop loads only (request_rate inf)")
    lengths = per_prompt_lengths(output_len, len(prompts))
    shares = split_clients(load.max_concurrency or len(prompts), load.client_processes)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads and sockets
    next_index = ctx.Value("q", 0)
    all_ready = ctx.Barrier(len(shares))
    answers = ctx.Queue()
    url = base_url.rstrip("/") + "/v1/completions"
    workers = [
        ctx.Process(target=_client_process, daemon=True,
                    args=(url, model, list(prompts), lengths, temperature, n, next_index, all_ready, answers))
        for n in shares
    ]  # fmt: skip
    for worker in workers:
        worker.start()
    parts = [answers.get() for _ in workers]  # before join: a full pipe would block the child's exit
    for worker in workers:
        worker.join()
    if missing := [w.exitcode for w in workers if w.exitcode != 0]:
        raise RuntimeError(f"client processes failed with exit codes {missing}")
    started = min(p[0] for p in parts)
    finished = max(p[1] for p in parts)
    results: list[RequestResult | None] = [None] * len(prompts)
    for _, _, done in parts:
        for index, result in done:
            results[index] = result
    return finished - started, [r or RequestResult(error="never sent") for r in results]


def _client_process(
    url: str, model: str, prompts: list[Any], lengths: list[int], temperature: float, clients: int,
    next_index: Any, all_ready: Any, answers: Any,
) -> None:  # fmt: skip
    answers.put(
        run_async(_clients(url, model, prompts, lengths, temperature, clients, next_index, all_ready))
    )


async def _clients(
    url: str, model: str, prompts: list[Any], lengths: list[int], temperature: float, clients: int,
    next_index: Any, all_ready: Any,
) -> tuple[float, float, list[tuple[int, RequestResult]]]:  # fmt: skip
    done: list[tuple[int, RequestResult]] = []

    def take() -> int | None:
        with next_index.get_lock():
            index = int(next_index.value)
            next_index.value = index + 1
        return index if index < len(prompts) else None

    async def client(session: aiohttp.ClientSession) -> None:
        while (i := take()) is not None:
            payload = completion_payload(model, prompts[i], lengths[i], temperature)
            done.append((i, await stream_completion(session, url, payload)))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=6 * 3600)
    ) as session:
        all_ready.wait()  # every process has its loop and session: start together
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return started, time.perf_counter(), done
