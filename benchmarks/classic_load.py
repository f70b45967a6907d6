"""The client side of ``benchmarks.classic_batching``: request bodies, the closed loop, one measured cell.

Every stack the benchmark serves (ours batched and not, LitServe's peers, both no-op ceilings) is driven
by these functions, so their numbers differ only by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import httpx
from sklearn.datasets import load_breast_cancer

from benchmarks.common import CpuMeter, latency_summary_ms, wait_for_quiet
from benchmarks.peers import PeerServer
from models.train_classic import load_text_dataset
from scripts.procs import BentoServer, metric_value

APIS = {"tabular": "predict_tabular", "text": "classify_text"}
# What each kind of cell posts to one of our servers; "noop" posts the tabular body (benchmarks/noop_service.py).
ROUTES = {**APIS, "noop": "echo"}


class Workload:
    """Request bodies, one row each; texts are unique per call so every one misses the cache."""

    def __init__(self) -> None:
        self.rows = load_breast_cancer().data.tolist()
        self.texts = load_text_dataset()[0]
        self.run = uuid.uuid4().hex[:8]
        self.count = 0

    def body(self, model: str) -> dict[str, Any]:
        self.count += 1
        if model in ("tabular", "noop"):
            return {"rows": [self.rows[self.count % len(self.rows)]]}
        return {"texts": [f"{self.texts[self.count % len(self.texts)]} [{self.run}-{self.count}]"]}


async def timed_loop(
    session: aiohttp.ClientSession, api: str, make_body: Any, concurrency: int, duration_s: float
) -> tuple[float, list[float], Counter[int]]:
    """``concurrency`` workers, each sending its next request when one returns, for ``duration_s``.
    Returns wall time (until the last started request ends), latencies of 200s, and status counts.
    aiohttp, not httpx: the client shares the 2 cores with the server, and costs ~3x less per request."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(f"/{api}", json=make_body()) as response:
                    await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0  # a dropped connection or a client timeout: counted, never retried
            statuses[status] += 1
            if status == 200:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, statuses


def batch_sizes(server: BentoServer) -> dict[str, tuple[float, float]]:
    text = httpx.get(f"{server.url}/metrics").text
    return {
        model: (
            metric_value(text, "infstack_classic_batch_size_sum", model=model) or 0.0,
            metric_value(text, "infstack_classic_batch_size_count", model=model) or 0.0,
        )
        for model in APIS
    }


def measure(
    server: BentoServer | PeerServer, workload: Workload, model: str, concurrency: int, duration_s: float
) -> dict[str, Any]:
    """One cell: warm the dispatcher up, then a timed closed loop; rows/s, latency, shed, batch size
    (the last only where our dispatcher runs the model)."""
    peer = isinstance(server, PeerServer)
    api = server.api_path.lstrip("/") if peer else ROUTES[model]
    batched = not peer and model in APIS

    async def run() -> tuple[float, list[float], Counter[int]]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(server.url, connector=connector, timeout=timeout) as session:
            await timed_loop(session, api, lambda: workload.body(model), concurrency, min(2.0, duration_s))
            before = batch_sizes(server)[model] if batched else (0.0, 0.0)
            with CpuMeter([server.proc.pid] if server.proc else []) as meter:
                outcome = await timed_loop(
                    session, api, lambda: workload.body(model), concurrency, duration_s
                )
            after = batch_sizes(server)[model] if batched else (0.0, 0.0)
            cell["cpu"] = meter.to_json()
            calls = after[1] - before[1]
            cell["mean_batch_rows"] = round((after[0] - before[0]) / calls, 2) if calls else None
            return outcome

    cell: dict[str, Any] = {"model": model, "concurrency": concurrency}
    pids = [server.proc.pid] if server.proc else []
    cell["foreign_cores_before"] = round(wait_for_quiet(pids, 0.3, timeout_s=10), 3)
    wall_s, latencies, statuses = asyncio.run(run())
    answered = statuses.get(200, 0)
    cell.update(
        rows_per_s=round(answered / wall_s, 2),
        requests=sum(statuses.values()),
        statuses={str(k): v for k, v in sorted(statuses.items())},
        shed_fraction=round(statuses.get(503, 0) / max(1, sum(statuses.values())), 4),
        latency_ms=latency_summary_ms(latencies) if latencies else None,
    )
    return cell


def quietest(
    server: BentoServer | PeerServer,
    workload: Workload,
    model: str,
    concurrency: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The cell measured with the least CPU taken by other jobs, in at most ``args.attempts`` tries
    (stopping at the first quiet one): this machine is shared, and a busy neighbour halves a rate."""
    tries = []
    for _ in range(args.attempts):
        tries.append(measure(server, workload, model, concurrency, args.duration))
        if tries[-1]["cpu"]["foreign_cores"] <= args.quiet_cores:
            break
    best = min(tries, key=lambda c: c["cpu"]["foreign_cores"])
    return {**best, "foreign_cores_of_tries": [t["cpu"]["foreign_cores"] for t in tries]}


def report(cell: dict[str, Any]) -> None:
    lat = cell["latency_ms"] or {}
    print(
        f"{cell['config']:>13s} {cell['model']:7s} c={cell['concurrency']:<3d} {cell['rows_per_s']:8.1f} rows/s  "
        f"p50 {lat.get('p50', 0):8.1f}  p99 {lat.get('p99', 0):8.1f} ms  batch {cell['mean_batch_rows']}  "
        f"shed {cell['shed_fraction']:.1%}  foreign cores {cell['cpu']['foreign_cores']:.2f}",
        flush=True,
    )
