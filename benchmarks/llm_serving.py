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

Here: the run and its measuring. The command line and what it sets up (settings, variants, loads, prompts)
live in benchmarks/llm_serving_args.py; the result (ratios, targets, roofline, table, JSON) in
benchmarks/llm_serving_report.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import CpuMeter, wait_for_quiet
from benchmarks.llm_load import Load, run_async, run_load, summarize, vllm_bench_serve
from benchmarks.llm_load_processes import run_load_processes
from benchmarks.llm_plot import plot_comparison
from benchmarks.llm_prompts import random_prompts
from benchmarks.llm_serving_args import (
    build_loads,
    build_settings,
    checkpoint_variants,
    load_lengths,
    load_prompts,
    parse_args,
    slo,
    static_batchers,
    variants,
)
from benchmarks.llm_serving_report import build_report, cpu_per_token, roofline, table, write_json
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
from benchmarks.roofline import copy_bandwidth_bytes_per_s, decode_floor
from services.llm.engine import resolve_model, served_model_name


def measure(target: Target, args: argparse.Namespace, model: str, model_dir: Path, loads: list[Load],
            prompts: dict[str, list[Any]], workdir: Path, lengths: dict[str, int | list[int]]) -> dict[str, Any]:  # fmt: skip
    """Warm the target up, then run every load ``--repeats`` times (fresh prompts each time, so the
    prefix cache never hits) and pool the requests of the repeats into one summary. Each repeat records
    the CPU that other jobs used meanwhile: on a shared machine that is what makes a number doubtful."""
    warm = random_prompts(model_dir, args.warmup_prompts, args.input_len, args.seed + 999, args.prompt_kind,
                          args.prefix_len, args.prefix_count)  # fmt: skip
    run_async(run_load(target.url, model, warm, args.output_len, Load("warmup", len(warm)), args.temperature))
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
                elif run.client_processes > 1:
                    duration, done = run_load_processes(target.url, model, prompts[f"{load.name}#{rep}"],
                                                        lengths[f"{load.name}#{rep}"], run, args.temperature)  # fmt: skip
                else:
                    duration, done = run_async(run_load(target.url, model, prompts[f"{load.name}#{rep}"],
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
        results[load.name] = summary | cpu_per_token(runs, summary) | {"runs": runs}
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, __doc__.splitlines()[0])
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
        report = build_report(args, settings, engine_env, commands, results, loads, started, changes) | {
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
