"""Adaptive batching on vs off for the classic-ML service (issue 3), both models, one run, one machine.

    python -m benchmarks.classic_batching [--duration 6] [--concurrency 1 8 64]

Serves ``services.classic.service:ClassicML`` (and its EmbeddingCache dependency) with ``bentoml serve``
several times, each with a fresh disk cache, and drives it from this process over loopback with a
closed-loop asyncio + aiohttp client, one row per request:

- ``tabular``: one breast-cancer feature row per request (the XGBoost booster);
- ``text``: one never-seen text per request (a stdlib docstring plus a unique suffix), so every text is an
  embedding-cache miss and costs a transformer pass: the cached path is issue 2's benchmark.

"on" is the default settings. "off" serves the same batch APIs without BentoML's dispatcher
(``INFSTACK_CLASSIC__BATCHING=false``: one model call per request, nothing shed) and limits the embedding
service's encoder to BentoML's smallest batch, 2 (otherwise it would still batch the misses of concurrent
texts). The sweep serves
"on" again with other ``max_latency_ms`` values and measures concurrency 64. rows/s counts answered
rows (HTTP 200) only; 503s are reported as the shed fraction. Writes
``benchmarks/results/classic_batching.{json,png}``.

Target (issue 3): at concurrency 64, batched >= 5x unbatched rows/s, with p99 under ``max_latency_ms``.

``--litserve-python .venv-peers/bin/python`` (``make peers``) adds LitServe serving the same stored
files (the booster; MiniLM + the text classifier), batched (64 rows / 10 ms) and not, in the same run,
with the same client and rows, and records ``litserve_ratio`` per model (our batched rows/s over
LitServe's better mode). Each stack's no-op POST rate (its HTTP ceiling) is measured too, unless
``--no-ceilings``: benchmarks/classic_peers.py. The client side is benchmarks/classic_load.py.

``--gateway`` also serves the whole Bento as a user does (``bentoml serve services.gateway.service:Gateway``:
the LLM on its default model, the embedding cache, ClassicML) and measures the same routes at its public
port as config ``gateway``: what a client of the product sees, one relay more than ClassicML alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.classic_batching_plot import plot
from benchmarks.classic_load import APIS, Workload, quietest, report
from benchmarks.classic_peers import (
    noop_ceilings,
    reference_answers,
    run_ceilings,
    run_litserve,
    versus_litserve,
)
from benchmarks.common import (
    GATEWAY_READY_TIMEOUT_S,
    RESULTS_DIR,
    format_table,
    named_changes,
    run_metadata,
    write_result,
)
from models.ensure import ensure_all
from models.train_classic import ensure_models
from scripts.deployments import CLASSIC_TARGET, GATEWAY_TARGET
from scripts.procs import BentoServer
from services.settings import load_settings

NAME = "classic_batching"
SPEEDUP_TARGET = 5.0
OFF = {
    "INFSTACK_CLASSIC__BATCHING": "false",
    # BentoML's smallest max_batch_size is 2: the embedding service may still pair two concurrent misses.
    "INFSTACK_EMBEDDING__MAX_BATCH_SIZE": "2",
    "INFSTACK_EMBEDDING__MAX_LATENCY_MS": "600000",  # its shedding bound would answer 503 for "off"
}
PACKAGES = ("bentoml", "xgboost", "scikit-learn", "torch", "sentence-transformers", "aiohttp", "numpy")


def serve(
    name: str,
    workdir: Path,
    models: dict,
    env: dict[str, str],
    target: str = CLASSIC_TARGET,
    ready_timeout_s: float = 180,
) -> BentoServer:
    base = {
        "INFSTACK_CACHE__DISK_PATH": str(workdir / name / "cache.sqlite3"),
        "INFSTACK_CLASSIC__TEXT_MODEL": str(models["text"].tag),
        "INFSTACK_CLASSIC__TABULAR_MODEL": str(models["tabular"].tag),
    }
    (workdir / name).mkdir(parents=True, exist_ok=True)
    return BentoServer(
        target, {**base, **env}, workdir / f"{name}.log", ready_timeout_s=ready_timeout_s
    ).start()


def run_on_off(args: argparse.Namespace, ctx: dict) -> list[dict[str, Any]]:
    """Both servers up at once; each (model, concurrency) is measured on then off, back to back, so
    the two numbers of a pair saw the same machine."""
    servers = {
        "on": serve("on", ctx["workdir"], ctx["models"], ctx["env"]),
        "off": serve("off", ctx["workdir"], ctx["models"], {**ctx["env"], **OFF}),
    }
    for name, env in variants(args.variant).items():  # "on" with some settings changed
        servers[name] = serve(name, ctx["workdir"], ctx["models"], {**ctx["env"], **env})
    if args.gateway:  # the product's public port: the same routes, relayed by the gateway to its ClassicML
        servers["gateway"] = serve(
            "gateway", ctx["workdir"], ctx["models"], ctx["env"], GATEWAY_TARGET, GATEWAY_READY_TIMEOUT_S
        )
    cells = []
    try:
        if args.litserve_python:  # the answers every LitServe peer must agree with, before any load
            ctx["reference"] = reference_answers(servers["on"], ctx["workload"])
        for model in APIS:
            for concurrency in args.concurrency:
                for config, server in servers.items():
                    cell = {"config": config, **quietest(server, ctx["workload"], model, concurrency, args)}
                    report(cell)
                    cells.append(cell)
    finally:
        for server in servers.values():
            server.stop()
    return cells


def variants(specs: list[str]) -> dict[str, dict[str, str]]:
    """``--variant NAME:KEY=VALUE[,KEY=VALUE]`` -> name -> the environment it adds to "on"."""
    return dict(named_changes(spec) for spec in specs)


def versus_on(cells: list[dict], names: list[str]) -> dict[str, Any]:
    """Each variant's rows/s and p99 beside "on"'s, per model and concurrency (measured back to back)."""
    on = {(c["model"], c["concurrency"]): c for c in cells if c["config"] == "on"}
    out: dict[str, Any] = {}
    for c in cells:
        if c["config"] in names and (base := on.get((c["model"], c["concurrency"]))):
            out.setdefault(c["config"], {}).setdefault(c["model"], {})[f"concurrency={c['concurrency']}"] = {
                "rows_per_s": c["rows_per_s"], "on_rows_per_s": base["rows_per_s"],
                "on_ratio": round(c["rows_per_s"] / base["rows_per_s"], 3) if base["rows_per_s"] else None,
                "p99_ms": (c["latency_ms"] or {}).get("p99"), "on_p99_ms": (base["latency_ms"] or {}).get("p99"),
            }  # fmt: skip
    return out


def run_sweep(tabular_ms: int, text_ms: int, args: argparse.Namespace, ctx: dict) -> list[dict[str, Any]]:
    env = {
        "INFSTACK_CLASSIC__TABULAR_MAX_LATENCY_MS": str(tabular_ms),
        "INFSTACK_CLASSIC__TEXT_MAX_LATENCY_MS": str(text_ms),
    }
    name = f"on-{tabular_ms}-{text_ms}"
    server = serve(name, ctx["workdir"], ctx["models"], {**ctx["env"], **env})
    cells = []
    try:
        for model, bound in (("tabular", tabular_ms), ("text", text_ms)):
            cell = quietest(server, ctx["workload"], model, max(args.concurrency), args)
            cell = {"config": name, **cell, "max_latency_ms": bound}
            report(cell)
            cells.append(cell)
    finally:
        server.stop()
    return cells


def summarize(cells: list[dict], bounds: dict[str, int]) -> dict[str, Any]:
    """Per model at the highest concurrency: speedup of on over off, and on's p99 against its bound."""
    top = max(c["concurrency"] for c in cells)
    out: dict[str, Any] = {"concurrency": top}
    for model in APIS:
        on, off = (next(c for c in cells if (c["config"], c["model"], c["concurrency"]) == (cfg, model, top))
                   for cfg in ("on", "off"))  # fmt: skip
        speedup = on["rows_per_s"] / off["rows_per_s"] if off["rows_per_s"] else None
        p99 = (on["latency_ms"] or {}).get("p99")
        out[model] = {
            "on_rows_per_s": on["rows_per_s"], "off_rows_per_s": off["rows_per_s"],
            "speedup": round(speedup, 2) if speedup else None, "on_p99_ms": p99,
            "max_latency_ms": bounds[model], "on_shed_fraction": on["shed_fraction"],
            "target_met": bool(speedup and speedup >= SPEEDUP_TARGET and p99 is not None and p99 < bounds[model]),
        }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds measured per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--sweep-tabular-ms", type=int, nargs="*", default=[10, 50, 1000])
    parser.add_argument("--sweep-text-ms", type=int, nargs="*", default=[500, 2000, 20000])
    parser.add_argument("--attempts", type=int, default=2, help="tries per cell when the machine is busy")
    parser.add_argument(
        "--quiet-cores", type=float, default=0.3, help="other jobs' cores that count as quiet"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="settings for every server, e.g. INFSTACK_EMBEDDING__DEVICE=cuda (recorded)",
    )
    parser.add_argument("--name", default=NAME, help="result file name under benchmarks/results/")
    parser.add_argument(
        "--litserve-python", help="python of LitServe's environment (make peers): add it as a peer"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="another 'on' server with these settings, measured beside on and off in every cell "
        "(e.g. in_flight_2:INFSTACK_CLASSIC__TEXT_BATCHES_IN_FLIGHT=2)",
    )
    parser.add_argument(
        "--gateway",
        action="store_true",
        help="also measure the routes through the whole Bento's gateway (config 'gateway')",
    )
    parser.add_argument(
        "--ceilings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure each stack's no-op POST rate (its HTTP ceiling)",
    )
    args = parser.parse_args()
    extra_env = dict(e.split("=", 1) for e in args.env)
    with mock.patch.dict(os.environ, extra_env):  # what the servers run with, recorded as such
        served = load_settings()
    defaults = served.classic
    bounds = {"tabular": defaults.tabular_max_latency_ms, "text": defaults.text_max_latency_ms}
    models = ensure_models()
    if args.gateway:
        ensure_all()  # the LLM the gateway's defaults serve (the tiny local model on a machine without one)
    with tempfile.TemporaryDirectory(prefix="classic-bench-") as tmp:
        # The LitServe text peer encodes on the device ours embeds on (cuda:N -> cuda:N, cpu -> cpu).
        ctx = {"workdir": Path(tmp), "models": models, "workload": Workload(), "env": extra_env,
               "encoder_device": served.embedding.device}  # fmt: skip
        cells = run_on_off(args, ctx)
        if args.ceilings:
            cells += run_ceilings(args, ctx)
        if args.litserve_python:
            peer_cells, checks = run_litserve(args, ctx)
            cells += peer_cells
        sweep = [{**c, "max_latency_ms": bounds[c["model"]]} for c in cells
                 if c["config"] == "on" and c["concurrency"] == max(args.concurrency)]  # fmt: skip
        for tabular_ms, text_ms in zip(args.sweep_tabular_ms, args.sweep_text_ms, strict=True):
            sweep += run_sweep(tabular_ms, text_ms, args, ctx)
    summary = summarize([c for c in cells if c["config"] in ("on", "off")], bounds)
    if args.variant:
        summary["variants"] = versus_on(cells, list(variants(args.variant)))
    if args.gateway:
        summary["gateway"] = versus_on(cells, ["gateway"]).get("gateway", {})
    if args.ceilings:
        summary["noop_ceilings"] = noop_ceilings(cells)
    if args.litserve_python:
        summary["versus_litserve"] = versus_litserve(cells)
        summary["litserve_agreement"] = checks
    result = {
        **run_metadata(NAME, PACKAGES),
        "flags": vars(args),
        "settings": {
            "on": defaults.model_dump(),
            "off": OFF,
            "every_server": extra_env,
            "embedding": served.embedding.model_dump(),
        },
        "models": {
            k: {"tag": str(m.tag), "accuracy": m.info.metadata["accuracy"]} for k, m in models.items()
        },
        "cells": cells,
        "sweep": sweep,
        "summary": summary,
    }
    path = write_result(args.name, result)
    png = plot(RESULTS_DIR / f"{args.name}.png", cells, sweep, bounds)
    print(f"\nwrote {path} and {png}\n")
    print(format_table(
        ["config", "model", "concurrency", "rows/s", "p50 ms", "p99 ms", "mean batch", "shed"],
        [[c["config"], c["model"], c["concurrency"], c["rows_per_s"], (c["latency_ms"] or {}).get("p50"),
          (c["latency_ms"] or {}).get("p99"), c["mean_batch_rows"], f"{c['shed_fraction']:.1%}"]
         for c in cells + sweep[len(APIS):]],
    ))  # fmt: skip
    if target := summary.get("noop_ceilings", {}).get("target"):
        print(f"tabular: c={target['concurrency']} batched / our no-op = {target['tabular_of_noop']} "
              f"(target {target['at_least']}): target met: {target['met']}")  # fmt: skip
    for model in APIS:
        s = summary[model]
        print(f"{model}: c={summary['concurrency']} on/off = {s['speedup']}x (target {SPEEDUP_TARGET}x), "
              f"on p99 {s['on_p99_ms']} ms vs max_latency_ms {s['max_latency_ms']}: target met: {s['target_met']}")  # fmt: skip


if __name__ == "__main__":
    main()
