"""Embedding-cache benchmark (issue 2): texts/s at 0% and 100% hit rate over HTTP, single-text cache-hit
latency, and raw sentence-transformers ``encode`` on the same texts, in one run on one machine.

    python -m benchmarks.embedding_cache [--batch-size 64] [--concurrency 1 4] [--rounds 4] [--target M:C]
    python -m benchmarks.embedding_cache --hit-rates 0 25 50 75 90 100 [--sweep-requests 24] --name NAME

With ``--hit-rates`` it runs the hit-rate sweep instead (benchmarks/embedding_sweep.py): each request
partly cached, texts/s and request p50/p99 per rate, on the same server and client.

It serves ``services.embedding.service:EmbeddingCache`` with ``bentoml serve`` (``scripts.procs.BentoServer``;
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
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.common import RESULTS_DIR, command_line, run_metadata, write_result
from benchmarks.embedding_load import Bench
from benchmarks.embedding_report import after_load, evaluate, plot, report, single_hit_summary, summarize
from benchmarks.embedding_sweep import plot_sweep, run_sweep, summarize_sweep, sweep_table
from scripts.deployments import EMBEDDING_TARGET
from scripts.procs import BentoServer

NAME = "embedding_cache"
PACKAGES = ("torch", "bentoml", "sentence-transformers", "transformers", "httpx", "numpy", "uvloop")


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
    hit_rates: tuple[float, ...] = ()
    sweep_requests: int = 24
    name: str = NAME
    target: str = EMBEDDING_TARGET
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
    add("--hit-rates", type=float, nargs="*", default=[], help="percent: run the hit-rate sweep instead")
    add("--sweep-requests", type=int, default=d.sweep_requests, help="requests per sweep block")
    add("--name", default=d.name, help="result file name (without .json)")
    add("--target", default=d.target, help="service to serve (module:Class), e.g. a variant under test")
    add("--results-dir", type=Path, default=d.results_dir, help="where the JSON and PNG go")
    args = vars(parser.parse_args(argv))
    return Params(**args | {"concurrency": tuple(args["concurrency"]), "hit_rates": tuple(args["hit_rates"])})


async def measure(server: BentoServer, model: Any, params: Params) -> Bench:
    bench = Bench(server, model, params)
    async with bench.client:
        if params.hit_rates:
            await run_sweep(bench, params.hit_rates, params.sweep_requests)
        else:
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
            # the raw-encode baseline's model; the sweep compares rates with each other and needs none
            model = (
                None
                if params.hit_rates
                else load_sentence_model(settings.embedding.model_id, settings.embedding.device)
            )
            bench = uvloop.run(measure(server, model, params))
        except BaseException:
            print(server.log_tail())
            raise
        finally:
            server.stop()
    if params.hit_rates:
        return finish_sweep(result, params, bench, settings, env, started)
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
    json_path = write_result(params.name, result, params.results_dir)
    machine, commit = result["machine"], (result["git"]["commit"] or "?")[:10]
    title = (
        f"embedding cache, {params.batch_size} texts/request, {machine['cpu_model']}, {machine['cpu_cores']} "
        f"cores, commit {commit}{' (dirty tree)' if result['git']['dirty'] else ''}"
    )
    plot(json_path.with_suffix(".png"), result, title)
    print(report(result))
    print(f"\nwrote {json_path} and {json_path.with_suffix('.png')}")


def finish_sweep(result: dict[str, Any], params: Params, bench: Bench, settings: Any, env: dict[str, str],
                 started: float) -> None:  # fmt: skip
    """The sweep's result file (its own shape: ``hit_rate_sweep`` instead of ``summary``), PNG and table."""
    result |= {
        "target": params.target,
        "settings": settings.model_dump(mode="json"),
        "env": env,
        "argv": command_line("embedding_cache"),
        "params": asdict(params) | {"results_dir": str(params.results_dir)},
        "other_jobs_cores_at_block_start": [round(x, 3) for x in bench.load_at_start],
        "hit_rate_sweep": summarize_sweep(bench.blocks),
        "blocks": [m.to_json() for m in bench.blocks],
        "runtime_s": round(time.perf_counter() - started, 1),
    }
    json_path = write_result(params.name, result, params.results_dir)
    plot_sweep(json_path.with_suffix(".png"), result["hit_rate_sweep"],
               f"embedding cache hit-rate sweep, {params.batch_size} texts/request, {result['machine']['cpu_model']}")  # fmt: skip
    print(sweep_table(result["hit_rate_sweep"]))
    print(f"\nwrote {json_path} and {json_path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
