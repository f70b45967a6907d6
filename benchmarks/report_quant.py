"""REPORT.md's section on quantized checkpoints served by the whole Bento (``python -m benchmarks
llm_serving --preset ... --checkpoint-variant NAME:SCHEME``): each scheme's output throughput, batch-1
TPOT and KV-cache tokens beside the bf16 baseline of the same run, and its row in the claims table.
Built on benchmarks/report.py's helpers."""

from __future__ import annotations

from typing import Any

from benchmarks.report import _llm, _num, command, kv_cache_token_count, kv_cache_tokens, machine, table

FP8_CLAIM = "FP8 weights: 1.8-2.5x throughput"
FP8_CLAIM_MIN = 1.8


def is_checkpoint_run(data: dict[str, Any]) -> bool:
    return any("checkpoint_scheme" in c for c in ((data.get("load") or {}).get("variants") or {}).values())


def checkpoint_rows(results: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per target and load of every checkpoint run, with ratios against its baseline."""
    rows = []
    for name, data in _llm(results):
        base = data.get("baseline")
        if not is_checkpoint_run(data) or base not in data["results"]:
            continue
        variants = data["load"]["variants"]
        for target, by_load in data["results"].items():
            scheme = (variants.get(target) or {}).get("checkpoint_scheme", "bf16")
            for load, r in by_load.items():
                b = data["results"][base][load]
                kv, kv_base = kv_cache_token_count(data, target), kv_cache_token_count(data, base)
                rows.append({"file": name, "data": data, "target": target, "scheme": scheme, "load": load, "r": r,
                             "ratio": r["output_throughput"] / b["output_throughput"],
                             "kv_ratio": kv / kv_base if kv and kv_base else None})  # fmt: skip
    return rows


def fp8_checkpoint_claim(results: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    found = [r for r in checkpoint_rows(results) if r["scheme"] == "fp8-dynamic" and r["load"] == "rate=inf"]
    if not found:
        return []
    r = found[-1]
    held = "yes" if r["ratio"] >= FP8_CLAIM_MIN else "no"
    return [[FP8_CLAIM, f"{r['ratio']:.2f}x bf16 output tok/s at rate=inf, FP8 checkpoint through the Bento "
             f"(`{r['file']}`)", held]]  # fmt: skip


def quant_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows, commands = [], set()
    for x in checkpoint_rows(results):
        r = x["r"]
        rows.append([f"`{x['file']}`", machine(x["data"]), f"{x['target']} ({x['scheme']})", x["load"],
                     _num(r["output_throughput"]), f"**{x['ratio']:.2f}x**", _num(r["median_ttft_ms"], 1),
                     _num(r["median_tpot_ms"], 2), kv_cache_tokens(x["data"], x["target"]),
                     "-" if x["kv_ratio"] is None else f"{x['kv_ratio']:.2f}x", str(r["failed"])])  # fmt: skip
        commands.add(f"- `{x['file']}`: {command(x['data'], x['file'])}")
    head = ["file", "machine", "target (scheme)", "load", "out tok/s", "vs bf16", "TTFT p50 ms", "TPOT p50 ms",
            "KV-cache tokens", "KV vs bf16", "failed"]  # fmt: skip
    return ["## 2e. Quantized checkpoints through the Bento: each scheme vs bf16, same run", "",
            "Dummy weights in each checkpoint format (`models/write_arch_config.py --quant-scheme`, the",
            "`quantization_config` that `models.quantize` writes); accuracy of the schemes: docs/QUANTIZATION.md.",
            "", *table(head, rows), "", *sorted(commands), ""]  # fmt: skip
