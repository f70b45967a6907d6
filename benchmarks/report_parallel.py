"""REPORT.md's sections on multi-GPU serving: layouts of the same Bento (tensor, pipeline, data
parallel) compared within one run, and routing across data-parallel replicas (prefix affinity vs
round-robin) with its row in the claims table. Built on benchmarks/report.py's helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.report import _llm, _num, command, machine, table

AFFINITY_CLAIM = (
    "Prefix-aware routing across replicas: TTFT p50 >= 40% lower than round-robin, throughput no worse"
)
AFFINITY_TTFT_CUT = 0.40


def affinity_claims(results: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    rows = []
    for r in affinity_rows(results):
        held = r["ttft_cut"] >= AFFINITY_TTFT_CUT and r["throughput_ratio"] >= 1.0
        rows.append([AFFINITY_CLAIM, f"TTFT p50 {-r['ttft_cut']:+.0%}, {r['throughput_ratio']:.2f}x output tok/s, "
                     f"{r['target']} at {r['load']} (`{r['file']}`)", "yes" if held else "no"])  # fmt: skip
    return rows


def _compared_bentos(results: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Runs that compare Bento settings with each other (``--baseline`` other than raw vLLM)."""
    return (
        (n, d)
        for n, d in _llm(results)
        if d.get("baseline", "raw") != "raw" and d["baseline"] in d["results"]
    )


def _gpus(data: dict[str, Any], target: str) -> str:
    settings = {**data.get("engine_settings", {}), **(data["load"].get("variants") or {}).get(target, {})}
    tp, pp, dp = (
        settings.get(k, 1) for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
    )
    return f"TP{tp} x PP{pp} x DP{dp}"


def layouts_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    from benchmarks.report_quant import is_checkpoint_run

    rows, commands = [], []
    for name, data in _compared_bentos(results):
        if any("routing" in changes for changes in (data["load"].get("variants") or {}).values()):
            continue  # routing runs: section 7b
        if is_checkpoint_run(data):
            continue  # quantized checkpoints: section 2e
        base = data["baseline"]
        model = Path(str(data.get("engine_settings", {}).get("model", "?"))).name
        for target, by_load in data["results"].items():
            for load, r in by_load.items():
                ratio = r["output_throughput"] / data["results"][base][load]["output_throughput"]
                rows.append([f"`{name}`", machine(data), model, f"{target} ({_gpus(data, target)})", load,
                             _num(r["output_throughput"]), f"**{ratio:.2f}x**", _num(r["median_ttft_ms"], 1),
                             _num(r["median_tpot_ms"], 2), str(r["failed"])])  # fmt: skip
        commands.append(f"- `{name}`: {command(data, name)}")
    head = ["file", "machine", "model shape", "target (layout)", "load", "out tok/s", "vs baseline", "TTFT p50 ms",
            "TPOT p50 ms", "failed"]  # fmt: skip
    return ["## 7. Multi-GPU layouts: the same Bento, settings only (baseline: the first target)", "",
            *table(head, rows), "", *commands, ""]  # fmt: skip


def affinity_rows(results: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each prefix-affinity target against the round-robin target with otherwise equal settings, per load."""
    rows = []
    for name, data in _compared_bentos(results):
        variants = data["load"].get("variants") or {}
        for target, changes in variants.items():
            if changes.get("routing") != "prefix-affinity":
                continue
            twin = {**changes, "routing": "round-robin"}
            pair = next((t for t, c in variants.items() if c == twin), None)
            if pair is None or target not in data["results"] or pair not in data["results"]:
                continue
            for load, ours in data["results"][target].items():
                other = data["results"][pair][load]
                rows.append({"file": name, "data": data, "target": target, "pair": pair, "load": load,
                             "ours": ours, "other": other,
                             "ttft_cut": 1 - ours["median_ttft_ms"] / other["median_ttft_ms"],
                             "throughput_ratio": ours["output_throughput"] / other["output_throughput"]})  # fmt: skip
    return rows


def affinity_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for r in affinity_rows(results):
        load = r["data"]["load"]
        rows.append([f"`{r['file']}`", machine(r["data"]), f"{r['target']} vs {r['pair']}", r["load"],
                     f"{load.get('prefix_count', 1)} x {load.get('prefix_len', 0)}",
                     f"{_num(r['other']['median_ttft_ms'], 1)} / {_num(r['ours']['median_ttft_ms'], 1)}",
                     f"**{-r['ttft_cut']:+.0%}**", f"{r['throughput_ratio']:.2f}x"])  # fmt: skip
    head = ["file", "machine", "targets", "load", "tenants x prefix tokens", "TTFT p50 ms round-robin / affinity",
            "TTFT p50 change", "output tok/s affinity / round-robin"]  # fmt: skip
    commands = sorted({f"- `{r['file']}`: {command(r['data'], r['file'])}" for r in affinity_rows(results)})
    return ["## 7b. Routing across data-parallel replicas: prefix affinity vs round-robin, same run", "",
            *table(head, rows), "", *commands, ""]  # fmt: skip
