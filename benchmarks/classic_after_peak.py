"""Low load after a peak: does the classic service answer a lone request as fast as before the peak?

    python -m benchmarks.classic_after_peak [--rounds 3] [--duration 5]

BentoML's dispatcher learns how long to hold a request for batch-mates from past batches; under load
that hold grows, and at low load it sustained itself (services/bentoml_dispatch.py,
``learn_wait_from_batches``). Two ClassicML servers side by side, ours (the default) and BentoML's own
estimate (``INFSTACK_CLASSIC__LEARN_WAIT_FROM_BATCHES=false``); per round and model, each server gets
concurrency 1, then 64, then 1 again ("after"), with the closed-loop client of benchmarks/classic_load.py.
Writes ``benchmarks/results/classic_after_peak.{json,png}``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.classic_batching import PACKAGES, serve
from benchmarks.classic_load import APIS, Workload, measure
from benchmarks.common import RESULTS_DIR, format_table, run_metadata, write_result
from models.train_classic import ensure_models

NAME = "classic_after_peak"
CONFIGS = {"ours": {}, "bentoml": {"INFSTACK_CLASSIC__LEARN_WAIT_FROM_BATCHES": "false"}}
PHASES = (("before", 1), ("peak", 64), ("after", 1))


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    workload, cells, models = Workload(), [], ensure_models()
    with tempfile.TemporaryDirectory(prefix="after-peak-") as tmp:
        servers = {name: serve(name, Path(tmp), models, env) for name, env in CONFIGS.items()}
        try:
            for round_ in range(args.rounds):
                for model in APIS:
                    for phase, concurrency in PHASES:
                        for config, server in servers.items():
                            cell = measure(server, workload, model, concurrency, args.duration)
                            cell.update(config=config, phase=phase, round=round_)
                            cells.append(cell)
                            print(f"round {round_} {model:8s} {phase:6s} c={concurrency:<3d} {config:8s} "
                                  f"{cell['rows_per_s']:8.1f} rows/s p50 {cell['latency_ms']['p50']:8.2f} ms "
                                  f"p99 {cell['latency_ms']['p99']:8.2f} ms", flush=True)  # fmt: skip
        finally:
            for server in servers.values():
                server.stop()
    return cells


def summarize(cells: list[dict]) -> dict[str, Any]:
    """Per model, phase and config: mean rows/s and mean p50 / p99 over the rounds."""
    out: dict[str, Any] = {}
    for model in APIS:
        for phase, _ in PHASES:
            for config in CONFIGS:
                own = [c for c in cells if (c["model"], c["phase"], c["config"]) == (model, phase, config)]
                out.setdefault(model, {}).setdefault(phase, {})[config] = {
                    "rows_per_s": round(sum(c["rows_per_s"] for c in own) / len(own), 1),
                    "p50_ms": round(sum(c["latency_ms"]["p50"] for c in own) / len(own), 2),
                    "p99_ms": round(sum(c["latency_ms"]["p99"] for c in own) / len(own), 2),
                }
            row = out[model][phase]
            row["bentoml_ratio"] = round(row["ours"]["rows_per_s"] / row["bentoml"]["rows_per_s"], 2)
    return out


def plot(path: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(APIS), figsize=(11, 4.2))
    for ax, model in zip(axes, APIS, strict=True):
        phases = [f"{phase}\n(c={c})" for phase, c in PHASES]
        for offset, config in ((-0.2, "ours"), (0.2, "bentoml")):
            p50 = [summary[model][phase][config]["p50_ms"] for phase, _ in PHASES]
            ax.bar([i + offset for i in range(len(PHASES))], p50, width=0.4, label=config)
        ax.set_xticks(range(len(PHASES)), phases)
        ax.set_yscale("log")
        ax.set_ylabel("p50 latency, ms (log)")
        ax.set_title(f"{model}: c=1 before and after a c=64 peak")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per cell")
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args()
    cells = run(args)
    summary = summarize(cells)
    result = {**run_metadata(NAME, PACKAGES), "flags": vars(args), "configs": CONFIGS, "cells": cells,
              "summary": summary}  # fmt: skip
    write_result(args.name, result)
    plot(RESULTS_DIR / f"{args.name}.png", summary)
    rows = [[model, phase, s["ours"]["rows_per_s"], s["bentoml"]["rows_per_s"], s["bentoml_ratio"],
             s["ours"]["p50_ms"], s["bentoml"]["p50_ms"]]
            for model in APIS for phase, s in summary[model].items()]  # fmt: skip
    print(
        format_table(
            ["model", "phase", "ours rows/s", "bentoml rows/s", "ratio", "ours p50", "bentoml p50"], rows
        )
    )


if __name__ == "__main__":
    main()
