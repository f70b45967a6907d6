"""benchmarks/results/REPORT.md, rebuilt from the committed result JSON files (never edited by hand).

    python -m benchmarks report [--results benchmarks/results] [--out benchmarks/results/REPORT.md]

One table per technique: the machine, the figures of the two sides measured in the same run, their
ratio, and the command that reproduces the file. The guide's claims sit beside what was measured here;
a claim without a committed measurement says so.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
BENTO_TARGETS = ("gateway", "bento", "llm")

# What the guide claims, the variant whose ratio to raw vLLM tests it, and how to read that ratio.
CLAIMS = [
    ("FP8 weights: 1.8-2.5x throughput", "fp8", "output_throughput_ratio", 1.8),
    ("FP8 KV cache: more KV-cache tokens, similar speed", "fp8_kv", "output_throughput_ratio", None),
    ("Prefix caching: large TTFT and throughput gains on a shared prefix", "prefix_off",
     "inverse_output_throughput_ratio", 1.0),
]  # fmt: skip
NOT_MEASURED: list[tuple[str, str]] = []  # (claim, why not): every claim of the guide has a scenario now


def load_results(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(data, dict) and "benchmark" in data:
            out.append((path.name, data))
    return out


def machine(data: dict[str, Any]) -> str:
    gpus = data.get("gpus") or []
    if gpus:
        first = gpus[0] if isinstance(gpus[0], str) else str(gpus[0].get("name", gpus[0]))
        return f"{len(gpus)}x {first.split(',')[0]}"
    cores = (data.get("machine") or {}).get("cpu_cores")
    return f"CPU, {cores} cores" if cores else "CPU"


def command(data: dict[str, Any], file: str) -> str:
    """The recorded command line, writing to this file (the GPU machine wrote elsewhere first)."""
    argv = list(data.get("argv") or [])
    if not argv:
        return "(command not recorded in this older file)"
    if "--out" in argv[:-1]:
        argv[argv.index("--out") + 1] = f"benchmarks/results/{file}"
    if "--results-dir" in argv[:-1]:
        argv[argv.index("--results-dir") + 1] = "benchmarks/results"
    return "`" + shlex.join(argv).replace("|", "\\|") + "`"


def target_ratios(data: dict[str, Any], target: str) -> dict[str, Any]:
    """Ratios of one target to raw (older files hold the only Bento target's ratios at the top level)."""
    ratios = data.get("ratios") or {}
    if target in ratios:
        return dict(ratios[target])
    return dict(ratios) if "rate=inf" in ratios or "concurrency=1" in ratios else {}


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _delta(ratio: dict[str, Any], key: str) -> str:
    return "-" if ratio.get(key) is None else f"{ratio[key]:+.2f}"


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _llm(results: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    return ((name, data) for name, data in results if data["benchmark"] == "llm_serving")


def overhead_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows, commands = [], []
    for name, data in _llm(results):
        raw = data["results"].get("raw")
        if (data.get("load") or {}).get("zipf"):
            continue  # repeated prompts measure the caches, not the overhead (section 2b)
        for target in (t for t in BENTO_TARGETS if t in data["results"] and raw):
            for load, ratio in target_ratios(data, target).items():
                if load == "targets":
                    continue
                rows.append([f"`{name}`", machine(data), target, load,
                             _num(raw[load]["output_throughput"]), _num(data["results"][target][load]["output_throughput"]),
                             f"**{ratio['output_throughput_ratio']:.3f}x**", _delta(ratio, "ttft_p50_delta_ms"),
                             _delta(ratio, "tpot_p50_delta_ms"), str(ratio.get("failed", "-"))])  # fmt: skip
            commands.append(f"- `{name}`: {command(data, name)}")
    head = ["file", "machine", "ours", "load", "raw vLLM tok/s", "ours tok/s", "ratio", "TTFT p50 delta ms",
            "TPOT p50 delta ms", "failed"]  # fmt: skip
    return ["## 1. Serving overhead: the Bento vs raw vLLM, same engine flags, same run", "",
            *table(head, rows), "", *commands, ""]  # fmt: skip


def technique_rows(results: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every --variant measured against raw vLLM in the same run, per load."""
    rows = []
    for name, data in _llm(results):
        if data.get("baseline", "raw") != "raw" or "raw" not in data["results"]:
            continue  # Bento variants compared among themselves (section 7)
        variants = data.get("load", {}).get("variants") or {}
        for variant, changes in variants.items():
            for load, ratio in target_ratios(data, variant).items():
                if load == "targets":
                    continue
                rows.append({"file": name, "data": data, "variant": variant, "changes": changes, "load": load,
                             "raw": data["results"]["raw"][load], "ours": data["results"][variant][load],
                             "ratio": ratio})  # fmt: skip
    return rows


def kv_cache_token_count(data: dict[str, Any], target: str) -> int | None:
    """What vLLM logged as its KV-cache size for ``target`` ("GPU KV cache size: 896,912 tokens")."""
    for line in (data.get("engine_log") or {}).get(target, []):
        if found := re.search(r"KV cache size: ([\d,]+) tokens", line):
            return int(found.group(1).replace(",", ""))
    return None


def kv_cache_tokens(data: dict[str, Any], target: str) -> str:
    count = kv_cache_token_count(data, target)
    return "-" if count is None else f"{count:,}"


def techniques_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for r in technique_rows(results):
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items())
        prefix = r["data"]["load"].get("prefix_len") or 0
        rows.append([f"`{r['file']}`", machine(r["data"]), f"{r['variant']} ({changes})", r["load"],
                     str(prefix), _num(r["raw"]["output_throughput"]), _num(r["ours"]["output_throughput"]),
                     f"**{r['ratio']['output_throughput_ratio']:.3f}x**",
                     f"{_num(r['raw']['median_ttft_ms'], 2)} / {_num(r['ours']['median_ttft_ms'], 2)}",
                     f"{_num(r['raw']['median_tpot_ms'], 2)} / {_num(r['ours']['median_tpot_ms'], 2)}",
                     f"{kv_cache_tokens(r['data'], 'raw')} / {kv_cache_tokens(r['data'], r['variant'])}"])  # fmt: skip
    head = ["file", "machine", "variant of raw vLLM", "load", "shared prefix tokens", "raw tok/s",
            "variant tok/s", "variant / raw", "TTFT p50 ms raw / variant", "TPOT p50 ms raw / variant",
            "KV-cache tokens raw / variant"]  # fmt: skip
    commands = sorted({f"- `{r['file']}`: {command(r['data'], r['file'])}" for r in technique_rows(results)})
    return [
        "## 2. Techniques: each a variant of raw vLLM, same run",
        "",
        *table(head, rows),
        "",
        *commands,
        "",
    ]


def claims_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    measured = technique_rows(results)
    for claim, variant, kind, bound in CLAIMS:
        found = [r for r in measured if r["variant"] == variant and r["load"] == "rate=inf"]
        if not found:
            rows.append([claim, "not measured in a committed run", "-"])
            continue
        r = found[-1]
        value = r["ratio"]["output_throughput_ratio"]
        if kind == "inverse_output_throughput_ratio":
            value = 1 / value
            text = f"prefix caching on / off: {value:.2f}x output tok/s at rate=inf (`{r['file']}`)"
        else:
            text = f"{value:.2f}x raw bf16 output tok/s at rate=inf (`{r['file']}`)"
        held = "-" if bound is None else ("yes" if value >= bound else "no")
        rows.append([claim, text, held])
    from benchmarks.report_caches import zipf_claim  # these modules build on this one's helpers

    rows.append(zipf_claim(results))
    from benchmarks.report_parallel import affinity_claims

    rows += affinity_claims(results)
    from benchmarks.report_batching import batching_claim  # these modules build on this one's helpers
    from benchmarks.report_caches import semantic_claim
    from benchmarks.report_quant import fp8_checkpoint_claim

    rows += fp8_checkpoint_claim(results)
    rows += batching_claim(results)
    rows.append(semantic_claim(results))
    rows += [[claim, why, "-"] for claim, why in NOT_MEASURED]
    return ["## The guide's claims, measured", "", *table(["claim", "measured here", "held"], rows), ""]


def roofline_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, data in _llm(results):
        for target, r in (data.get("roofline") or {}).items():
            rows.append([f"`{name}`", machine(data), target, f"{r['weights_bytes'] / 1e9:.2f} GB",
                         f"{r['copy_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s", _num(r["tpot_floor_ms"], 2),
                         _num(r["tpot_p50_ms"], 2), f"**{r['tpot_over_floor']:.2f}x**"])  # fmt: skip
    head = ["file", "machine", "target", "weights read per step", "copy bandwidth", "TPOT floor ms",
            "TPOT p50 ms at c=1", "over the floor"]  # fmt: skip
    return ["## 3. Batch-1 decode roofline (weights / measured bandwidth vs measured TPOT)", "",
            *table(head, rows), ""]  # fmt: skip


def build(directory: Path) -> str:
    from benchmarks.report_batching import batching_section  # these modules build on this one's helpers
    from benchmarks.report_caches import embedding_sweep_section, semantic_section, zipf_section
    from benchmarks.report_parallel import affinity_section, layouts_section
    from benchmarks.report_quant import quant_section
    from benchmarks.report_services import (
        classic_section,
        embedding_peers_section,
        embedding_section,
        peers_section,
        soak_section,
    )

    results = load_results(directory)
    lines = [
        "# Performance report",
        "",
        "Generated by `python -m benchmarks report` from the JSON files in this directory; do not edit.",
        "Every ratio compares two targets measured in the same run on the same machine. Each file also holds",
        "package versions, settings, the git commit and per-request percentiles; README.md here says more.",
        "",
        *claims_section(results),
        *overhead_section(results),
        *techniques_section(results),
        *zipf_section(results),
        *batching_section(results),
        *semantic_section(results),
        *quant_section(results),
        *roofline_section(results),
        *classic_section(results),
        *peers_section(results),
        *embedding_section(results),
        *embedding_sweep_section(results),
        *embedding_peers_section(results),
        *soak_section(results),
        *layouts_section(results),
        *affinity_section(results),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, help="default: REPORT.md in --results")
    args = parser.parse_args(argv)
    out = args.out or args.results / "REPORT.md"
    out.write_text(build(args.results))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
