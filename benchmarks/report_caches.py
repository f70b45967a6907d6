"""REPORT.md's sections on the caches under realistic traffic: the semantic cache on near-duplicate
prompts (``python -m benchmarks semantic_cache``) with its row in the claims table, and the embedding
cache's hit-rate sweep (``python -m benchmarks embedding_cache --hit-rates ...``). Built on
benchmarks/report.py's helpers."""

from __future__ import annotations

from typing import Any

from benchmarks.report import _num, command, machine, table

SEMANTIC_CLAIM = "Semantic cache: >= 80% of near-duplicate prompts answered, zero wrong answers (issue 15)"
SEMANTIC_ANSWERED = 0.80


def _semantic(results: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, d) for n, d in results if d["benchmark"] == "semantic_cache"]


def _threshold(data: dict[str, Any], target: str) -> str:
    changes = (data["load"].get("variants") or {}).get(target)
    if changes is None:
        return "-"
    return f"{changes['semantic_threshold']:g}" if changes.get("semantic_cache") else "off (exact only)"


def semantic_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows, sweeps, commands = [], [], []
    for name, data in _semantic(results):
        for target, r in data["targets"].items():
            unlike = r.get("semantic_hits_unlike_the_model")
            embed = (r.get("embed_round_trip_ms") or {}).get("p50")
            rows.append([f"`{name}`", machine(data), target, _threshold(data, target),
                         f"**{r['near_duplicates_answered']:.0%}**", str(r["wrong_params"]), str(r["wrong_base"]),
                         "-" if unlike is None else str(unlike),
                         f"{_num(r['latency_ms_near_duplicates']['p50'], 1)} / {_num(r['latency_ms_near_duplicates']['p99'], 1)}",
                         _num(embed, 1), "yes" if r["issue_target_met"] else "no"])  # fmt: skip
        sweeps.append(f"- `{name}`, replayed with the service's own index: " + ", ".join(
            f"{t}: {s['near_duplicates_answered']:.0%} (wrong {s['wrong_params'] + s['wrong_base']})"
            for t, s in data["sweep"].items()))  # fmt: skip
        commands.append(f"- `{name}`: {command(data, name)}")
    head = ["file", "machine", "target", "semantic threshold", "near-duplicates answered (same params)",
            "wrong: hit with other params", "wrong: another prompt's answer", "hits unlike the model's own answer",
            "near-duplicate latency p50 / p99 ms", "one prompt embedding p50 ms", ">= 80%, 0 wrong"]  # fmt: skip
    return ["## 2d. Semantic cache on near-duplicate prompts: the Bento with it on vs exact only vs raw vLLM", "",
            "Near-duplicates: case, punctuation, whitespace, small edits of earlier prompts, temperature 0. "
            "Mixed in: near-duplicates with other sampling parameters, where any semantic hit is wrong.", "",
            *table(head, rows), "", "Threshold sweep (near-duplicates answered, wrong answers):", "", *sweeps, "",
            *commands, ""]  # fmt: skip


def semantic_claim(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    found = [(n, d) for n, d in _semantic(results) if "semantic" in d["targets"]]
    if not found:
        return [SEMANTIC_CLAIM, "not measured in a committed run", "-"]
    name, data = found[-1]
    r = data["targets"]["semantic"]
    best = next((t for t, s in sorted(data["sweep"].items(), key=lambda x: -float(x[0]))
                 if s["near_duplicates_answered"] >= SEMANTIC_ANSWERED and s["wrong_params"] + s["wrong_base"] == 0), None)  # fmt: skip
    text = (f"{r['near_duplicates_answered']:.0%} answered, {r['wrong_params']} wrong (other params), "
            f"{r['wrong_base']} from another prompt, at threshold {_threshold(data, 'semantic')}; replayed: highest "
            f"threshold reaching 80% with 0 wrong: {best or 'none'} (`{name}`)")  # fmt: skip
    return [SEMANTIC_CLAIM, text, "yes" if r["issue_target_met"] and r["wrong_base"] == 0 else "no"]


def embedding_sweep_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows, commands = [], []
    for name, data in results:
        if data["benchmark"] != "embedding_cache" or not data.get("hit_rate_sweep"):
            continue
        for r in data["hit_rate_sweep"]:
            rows.append([f"`{name}`", machine(data), str(r["concurrency"]), str(r["texts_per_request"]),
                         f"{r['hit_rate_percent']:g}%", _num(r["texts_per_s"]["value"]),
                         "-" if r["over_zero_hits"] is None else f"**{r['over_zero_hits']:.2f}x**",
                         _num(r["request_latency_ms"]["p50"], 1), _num(r["request_latency_ms"]["p99"], 1)])  # fmt: skip
        commands.append(f"- `{name}`: {command(data, name)}")
    head = ["file", "machine", "clients", "texts/request", "hit rate", "texts/s", "vs 0% hits", "request p50 ms",
            "request p99 ms"]  # fmt: skip
    return ["## 5b. Embedding cache: hit-rate sweep (each request partly cached)", "", *table(head, rows), "",
            *commands, ""]  # fmt: skip
