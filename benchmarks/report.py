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
AFFINITY_CLAIM = (
    "Prefix-aware routing across replicas: TTFT p50 >= 40% lower than round-robin, throughput no worse"
)
AFFINITY_TTFT_CUT = 0.40
ZIPF_CLAIM = "Response cache on Zipf-popular repeated prompts: >= 3x raw vLLM's requests/s, TTFT p50 lower"
ZIPF_TARGET = 3.0


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


def kv_cache_tokens(data: dict[str, Any], target: str) -> str:
    """What vLLM logged as its KV-cache size for ``target`` ("GPU KV cache size: 896,912 tokens")."""
    for line in (data.get("engine_log") or {}).get(target, []):
        if found := re.search(r"KV cache size: ([\d,]+) tokens", line):
            return found.group(1)
    return "-"


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
    zipf = zipf_rows(results)
    if zipf:
        z = zipf[-1]
        held = z["ratio"]["requests_per_s_ratio"] >= ZIPF_TARGET and z["ratio"]["ttft_p50_delta_ms"] < 0
        rows.append([ZIPF_CLAIM, f"{z['ratio']['requests_per_s_ratio']:.2f}x requests/s, TTFT p50 "
                     f"{z['ratio']['ttft_p50_delta_ms']:+.1f} ms, {z['load']} (`{z['file']}`)", "yes" if held else "no"])  # fmt: skip
    else:
        rows.append([ZIPF_CLAIM, "not measured in a committed run", "-"])
    for r in affinity_rows(results):
        held = r["ttft_cut"] >= AFFINITY_TTFT_CUT and r["throughput_ratio"] >= 1.0
        rows.append([AFFINITY_CLAIM, f"TTFT p50 {-r['ttft_cut']:+.0%}, {r['throughput_ratio']:.2f}x output tok/s, "
                     f"{r['target']} at {r['load']} (`{r['file']}`)", "yes" if held else "no"])  # fmt: skip
    from benchmarks.report_batching import batching_claim  # these modules build on this one's helpers
    from benchmarks.report_caches import semantic_claim
    from benchmarks.report_quant import fp8_checkpoint_claim

    rows += fp8_checkpoint_claim(results)
    rows += batching_claim(results)
    rows.append(semantic_claim(results))
    rows += [[claim, why, "-"] for claim, why in NOT_MEASURED]
    return ["## The guide's claims, measured", "", *table(["claim", "measured here", "held"], rows), ""]


def zipf_rows(results: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The Bento vs raw vLLM on repeated-prompt (Zipf) traffic, per load."""
    rows = []
    for name, data in _llm(results):
        zipf = (data.get("load") or {}).get("zipf")
        raw = data["results"].get("raw")
        if not zipf or not raw:
            continue
        for target in (t for t in BENTO_TARGETS if t in data["results"]):
            for load, ratio in target_ratios(data, target).items():
                if load != "targets" and "requests_per_s_ratio" in ratio:
                    rows.append({"file": name, "data": data, "zipf": zipf, "target": target, "load": load,
                                 "raw": raw[load], "ours": data["results"][target][load], "ratio": ratio})  # fmt: skip
    return rows


def zipf_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for r in zipf_rows(results):
        rows.append([f"`{r['file']}`", machine(r["data"]), r["load"], f"{r['zipf']['distinct_prompts']} distinct, "
                     f"s={r['zipf']['exponent']:g}", _num(r["raw"]["request_throughput"], 2),
                     _num(r["ours"]["request_throughput"], 2), f"**{r['ratio']['requests_per_s_ratio']:.2f}x**",
                     f"{_num(r['raw']['median_ttft_ms'], 2)} / {_num(r['ours']['median_ttft_ms'], 2)}"])  # fmt: skip
    head = ["file", "machine", "load", "prompts", "raw vLLM req/s", "Bento req/s", "requests_per_s_ratio",
            "TTFT p50 ms raw / Bento"]  # fmt: skip
    commands = sorted({f"- `{r['file']}`: {command(r['data'], r['file'])}" for r in zipf_rows(results)})
    return ["## 2b. Caches on repeated-prompt traffic: the whole Bento vs raw vLLM (prefix caching on)", "",
            *table(head, rows), "", *commands, ""]  # fmt: skip


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


def classic_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, data in results:
        if data["benchmark"] != "classic_batching":
            continue
        summary = data["summary"]
        for model in ("tabular", "text"):
            s = summary.get(model)
            if s:
                rows.append([f"`{name}`", machine(data), model, str(summary["concurrency"]),
                             _num(s["on_rows_per_s"]), _num(s["off_rows_per_s"]), f"**{_num(s['speedup'], 2)}x**",
                             _num(s["on_p99_ms"]), f"{s['on_shed_fraction']:.1%}"])  # fmt: skip
    head = ["file", "machine", "model", "clients", "batched rows/s", "unbatched rows/s", "ratio",
            "batched p99 ms", "shed"]  # fmt: skip
    return ["## 4. Classic ML: adaptive batching on vs off (`python -m benchmarks classic_batching`)", "",
            *table(head, rows), ""]  # fmt: skip


def peers_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Ours vs a dedicated peer serving the same model, same client, same run (``litserve_ratio``)."""
    rows = []
    for name, data in results:
        versus = (
            (data.get("summary") or {}).get("versus_litserve")
            if data["benchmark"] == "classic_batching"
            else None
        )
        for load, v in (versus or {}).items():
            rows.append([f"`{name}`", machine(data), "tabular", load, _num(v["ours_rows_per_s"]),
                         f"{_num(v['litserve_rows_per_s'])} ({v['litserve_mode']})", f"**{v['litserve_ratio']:.2f}x**",
                         f"{_num(v['ours_p99_ms'])} / {_num(v['litserve_p99_ms'])}", str(v["ours_503"])])  # fmt: skip
    head = ["file", "machine", "model", "load", "ours rows/s (batched)", "LitServe rows/s (better mode)",
            "litserve_ratio", "p99 ms ours / LitServe", "our 503s"]  # fmt: skip
    return ["## 4b. Classic ML vs LitServe, same booster file (`make bench-classic-peers`)", "",
            *table(head, rows), ""]  # fmt: skip


def embedding_peers_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Embedding misses vs infinity-emb, same model, same client, same run (``infinity_ratio``)."""
    rows = []
    for name, data in results:
        if data["benchmark"] != "embedding_peers":
            continue
        for cell, s in data["summary"].items():
            ours, peer = s["ours"], s["infinity"]
            rows.append([f"`{name}`", machine(data), cell, _num(ours["texts_per_s"]), _num(peer["texts_per_s"]),
                         f"**{s['infinity_ratio']:.2f}x**", f"{_num(ours['p99_ms'])} / {_num(peer['p99_ms'])}",
                         f"{ours['refused']} / {peer['refused']}"])  # fmt: skip
    head = ["file", "machine", "texts per request x clients", "ours texts/s", "infinity-emb texts/s",
            "infinity_ratio", "p99 ms ours / infinity", "refused ours / infinity"]  # fmt: skip
    return ["## 5c. Embedding misses vs infinity-emb, same model (`make bench-embedding-peers`)", "",
            *table(head, rows), ""]  # fmt: skip


def embedding_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, data in results:
        if data["benchmark"] != "embedding_cache":
            continue
        for cell in data.get("summary", []):
            rows.append([f"`{name}`", machine(data), cell["encoding_format"], str(cell["concurrency"]),
                         _num(cell["raw_texts_per_s"]["value"]), _num(cell["miss_texts_per_s"]["value"]),
                         _num(cell["hit_texts_per_s"]["value"]), f"**{cell['hit_over_miss']['value']:.1f}x**"])  # fmt: skip
    head = ["file", "machine", "format", "clients", "raw encode texts/s", "miss texts/s", "hit texts/s",
            "hit / miss"]  # fmt: skip
    return ["## 5. Embedding cache: hits vs misses vs raw encode (`python -m benchmarks embedding_cache`)",
            "", *table(head, rows), ""]  # fmt: skip


def soak_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, data in results:
        if data["benchmark"] != "soak":
            continue
        v = data["verdict"]
        rows.append([f"`{name}`", machine(data), f"{data['minutes']:g} min at {data['rate_requests_per_s']:.0f} req/s "
                     f"(peak {data['peak_requests_per_s']:.0f})", f"{v['requests']:,}", str(v["lost"]),
                     str(v["corrupted_or_wrong"]), str(v["server_errors_5xx"]), f"{v['max_rss_growth']:.1%}",
                     "yes" if v["passed"] else "**no**"])  # fmt: skip
    head = ["file", "machine", "load", "requests", "lost", "wrong", "5xx", "max RSS growth", "passed"]
    return ["## 6. Soak: the whole Bento under mixed load (`python -m benchmarks soak`)", "",
            *table(head, rows), ""]  # fmt: skip


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


def build(directory: Path) -> str:
    from benchmarks.report_batching import batching_section  # these modules build on this one's helpers
    from benchmarks.report_caches import embedding_sweep_section, semantic_section
    from benchmarks.report_quant import quant_section

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
