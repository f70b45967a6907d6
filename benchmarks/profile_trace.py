"""Profile N requests against a running Bento: vLLM's torch profiler trace and its top kernels.

    INFSTACK_LLM__PROFILER_DIR=/tmp/vllm-traces make serve      # the engine, with its profiler on
    python -m benchmarks.profile_trace --url http://localhost:3000 --trace-dir /tmp/vllm-traces \\
        [--requests 8 --input-len 512 --output-len 64] --out benchmarks/results/profile_NAME

Through the Bento's public port: POST /start_profile, N concurrent completions, POST /stop_profile
(vLLM's routes, relayed). Then the first engine worker's new trace in ``--trace-dir`` (the engine's host)
is copied to ``--out`` with ``top_kernels.json`` and ``top_kernels.md``: GPU kernels by total time (on a
CPU build, which has no kernels, its CPU operators or Python functions).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from benchmarks.llm_load import Load, run_load


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument(
        "--trace-dir", type=Path, required=True, help="INFSTACK_LLM__PROFILER_DIR of the served Bento"
    )
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--input-len", type=int, default=512, help="approximate prompt length, in words")
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--wait-s", type=float, default=180, help="most time to wait for the trace files")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def _traces(directory: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in directory.rglob("*.json*") if p.is_file()}


def wait_for_new_traces(directory: Path, before: dict[Path, int], wait_s: float) -> list[Path]:
    """Trace files written since ``before``, once their sizes stop changing. torch writes them after
    /stop_profile returns: one per engine worker (``rank*``, the model's kernels) and, in recent vLLM,
    one of the front end (``*async_llm*``); the workers' come first in the answer."""
    deadline, last = time.monotonic() + wait_s, None
    while time.monotonic() < deadline:
        now = {p: s for p, s in _traces(directory).items() if before.get(p) != s}
        if now and now == last and any("rank" in p.name for p in now):
            break
        last = now
        time.sleep(2)
    if not last:
        raise TimeoutError(f"no trace in {directory} after {wait_s:.0f} s")
    return sorted(last, key=lambda p: ("rank" not in p.name, p.name))


def top_kernels(trace: Path, top: int) -> dict[str, Any]:
    """Events of category ``kernel`` (GPU), else ``cpu_op``, else ``python_function``, summed by name."""
    opener = gzip.open if trace.suffix == ".gz" else open
    with opener(trace, "rt") as handle:
        events = json.load(handle).get("traceEvents", [])
    present = {e.get("cat") for e in events if e.get("ph") == "X"}
    kind = next((c for c in ("kernel", "cpu_op", "python_function") if c in present), "kernel")
    total_us: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for event in events:
        if event.get("cat") == kind and event.get("ph") == "X":
            total_us[event["name"]] += float(event.get("dur", 0.0))
            calls[event["name"]] += 1
    overall = sum(total_us.values()) or 1.0
    rows = sorted(total_us, key=total_us.__getitem__, reverse=True)[:top]
    return {
        "trace": trace.name,
        "category": kind,
        "total_ms": round(overall / 1e3, 3),
        "top": [
            {
                "name": n,
                "calls": calls[n],
                "total_ms": round(total_us[n] / 1e3, 3),
                "share": round(total_us[n] / overall, 4),
            }
            for n in rows
        ],
    }


def markdown(table: dict[str, Any]) -> str:
    lines = [f"Top {table['category']} events of `{table['trace']}` ({table['total_ms']} ms in all)", "",
             "| name | calls | total ms | share |", "|---|---|---|---|"]  # fmt: skip
    for row in table["top"]:
        name = row["name"] if len(row["name"]) <= 90 else row["name"][:87] + "..."
        lines.append(f"| `{name}` | {row['calls']} | {row['total_ms']} | {row['share']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.trace_dir.mkdir(parents=True, exist_ok=True)
    before = _traces(args.trace_dir)
    with httpx.Client(base_url=args.url, timeout=120) as client:
        model = client.get("/v1/models").json()["data"][0]["id"]
        started = client.post("/start_profile")
        if started.status_code == 404:
            raise SystemExit("the engine's profiler is off: serve with INFSTACK_LLM__PROFILER_DIR set")
        started.raise_for_status()
        words = " ".join(["profile"] * args.input_len)
        prompts = [f"{i} {words}" for i in range(args.requests)]
        load = Load("profile", args.requests)
        duration, results = asyncio.run(run_load(args.url, model, prompts, args.output_len, load, 0.0))
        client.post("/stop_profile").raise_for_status()
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} profiled requests failed: {failed[:3]}")
    traces = wait_for_new_traces(args.trace_dir, before, args.wait_s)
    args.out.mkdir(parents=True, exist_ok=True)
    table = top_kernels(traces[0], args.top) | {"requests": args.requests, "duration_s": round(duration, 3)}
    shutil.copy2(traces[0], args.out / traces[0].name)
    (args.out / "top_kernels.json").write_text(json.dumps(table, indent=2) + "\n")
    (args.out / "top_kernels.md").write_text(markdown(table))
    print(markdown(table))
    print(f"wrote {args.out}/ ({traces[0].name}, top_kernels.json, top_kernels.md)")


if __name__ == "__main__":
    main()
