"""What one ``benchmarks.llm_serving`` run is made of, from its command line: the parsed and checked
arguments, the LLMSettings every target starts from and the variants' changes to them, the loads and
each load's prompts and answer lengths. Pure set-up: nothing here starts a server or measures; the
run itself lives in benchmarks/llm_serving.py, its report in benchmarks/llm_serving_report.py."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from benchmarks.common import named_changes
from benchmarks.llm_load import Load, Slo, output_lengths
from benchmarks.llm_prompts import random_prompts, zipf_sequence
from models.write_arch_config import QUANT_SCHEMES
from services.llm.engine import served_model_name
from services.settings import LLMSettings, load_settings


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The command line of benchmarks/llm_serving.py; ``description`` is its docstring's first line."""
    p = argparse.ArgumentParser(description=description)
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
    p.add_argument("--client-processes", default="1",
                   help="comma list: each concurrency load once per count, its clients spread over that many "
                   "processes (our client; one asyncio process tops out near one core)")
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
    processes = [int(x) for x in args.client_processes.split(",") if x]
    if not processes or min(processes) < 1:
        p.error(f"--client-processes wants a comma list of counts >= 1, got {args.client_processes!r}")
    if args.client != "ours" and processes != [1]:
        p.error("--client-processes needs --client ours")
    args.client_processes = processes
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
        name, changes = named_changes(spec)
        overrides = {k: _value(v) for k, v in changes.items()}
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
    caps = [int(x) for x in args.concurrency.split(",") if x]
    for i, (c, n) in enumerate((c, n) for c in caps for n in args.client_processes):
        name = f"concurrency={c}" + (f",client_processes={n}" if n > 1 else "")
        loads.append(Load(name, args.concurrency_prompts, math.inf, c, args.seed + 101 + i, n))
    return loads
