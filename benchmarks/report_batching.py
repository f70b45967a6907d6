"""REPORT.md's section on continuous vs static batching, online (``llm_serving --static-batch``), and its
row in the claims table. Built on benchmarks/report.py's helpers.

Continuous batching is raw vLLM itself; static batching is the same engine (same settings, same run)
behind benchmarks/static_batcher.py. A ``relay`` target (the same proxy with batching off) shows what
the proxy hop costs by itself, so the static figure can be read against either side.
"""

from __future__ import annotations

from typing import Any

from benchmarks.report import _llm, _num, command, machine, table


def batching_rows(results: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per load and static target: raw vLLM (continuous) and the static batcher, same run."""
    rows = []
    for name, data in _llm(results):
        load = data.get("load") or {}
        raw = data["results"].get("raw")
        for target, limits in (load.get("static_batch") or {}).items():
            if not raw or target not in data["results"] or not limits.get("max_batch"):
                continue
            for load_name, ours in data["results"][target].items():
                cont = raw[load_name]
                relay = next((data["results"][t][load_name] for t, lim in load["static_batch"].items()
                              if not lim.get("max_batch") and t in data["results"]), None)  # fmt: skip
                rows.append({"file": name, "data": data, "target": target, "limits": limits, "load": load_name,
                             "raw": cont, "static": ours, "relay": relay,
                             "goodput_ratio": _ratio(cont.get("goodput"), ours.get("goodput")),
                             "throughput_ratio": _ratio(cont["request_throughput"], ours["request_throughput"]),
                             "slo_ratio": _ratio(cont.get("slo_met_fraction"), ours.get("slo_met_fraction"))})  # fmt: skip
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _pair(a: dict[str, Any], b: dict[str, Any], metric: str) -> str:
    return f"{_num(a[f'median_{metric}_ms'], 0)} / {_num(b[f'median_{metric}_ms'], 0)}"


def batching_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for r in batching_rows(results):
        slo = r["data"]["load"].get("slo") or {}
        relay = r["relay"]
        rows.append([f"`{r['file']}`", machine(r["data"]), r["load"],
                     f"B={r['limits']['max_batch']}, {r['limits']['max_wait_ms']:g} ms",
                     f"TTFT <= {slo.get('ttft_ms', '-')} ms, TPOT <= {slo.get('tpot_ms', '-')} ms",
                     f"{_num(r['raw'].get('goodput'), 2)} / {_num(r['static'].get('goodput'), 2)}",
                     "-" if r["goodput_ratio"] is None else f"**{r['goodput_ratio']:.2f}x**",
                     "-" if relay is None or not r["static"].get("goodput") else f"{relay['goodput'] / r['static']['goodput']:.2f}x",
                     f"{_pct(r['raw'].get('slo_met_fraction'))} / {_pct(r['static'].get('slo_met_fraction'))}",
                     f"{_num(r['raw']['request_throughput'], 2)} / {_num(r['static']['request_throughput'], 2)}",
                     _pair(r["raw"], r["static"], "ttft"),
                     f"{_num(r['raw']['p99_ttft_ms'], 0)} / {_num(r['static']['p99_ttft_ms'], 0)}",
                     _pair(r["raw"], r["static"], "e2el"),
                     f"{_num(r['raw']['p99_e2el_ms'], 0)} / {_num(r['static']['p99_e2el_ms'], 0)}"])  # fmt: skip
    head = ["file", "machine", "load", "static batch", "SLO", "goodput req/s continuous / static",
            "continuous / static", "relay (no batching) / static", "met the SLO", "completed req/s", "TTFT p50 ms",
            "TTFT p99 ms", "E2E p50 ms", "E2E p99 ms"]  # fmt: skip
    commands = sorted({f"- `{r['file']}`: {command(r['data'], r['file'])}" for r in batching_rows(results)})
    return ["## 2c. Continuous vs static batching, online: raw vLLM vs the same engine behind a static batcher",
            "", "Static batching: up to B requests dispatched together (when B wait, or the wait after the first "
            "has passed); the next batch only after every request of this one finished. Mixed answer lengths, "
            "Poisson arrivals. Goodput: requests that met the SLO per second of the run (from the first send to "
            "the last answer, so one straggler stretches it); met the SLO: the share of all requests sent.", "",
            *table(head, rows), "", *commands, ""]  # fmt: skip


def batching_claim(results: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    """The claims-table rows, one per run: judged at its heaviest Poisson rate (where batching decides
    the most), with the ratio at every other rate of the same run beside it."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in batching_rows(results):
        if r["goodput_ratio"] is not None:
            by_file.setdefault(r["file"], []).append(r)
    if not by_file:
        return [[BATCHING_CLAIM_TEXT, "not measured in a committed run", "-"]]
    claims = []
    for file, found in sorted(by_file.items()):
        rows = sorted(found, key=lambda r: _rate(r["load"]))
        heaviest = rows[-1]
        spread = ", ".join(f"{r['goodput_ratio']:.2f}x at {r['load']}" for r in rows)
        slo = heaviest["slo_ratio"]
        tokens = _ratio(heaviest["raw"].get("output_throughput"), heaviest["static"].get("output_throughput"))
        text = (f"goodput continuous / static {heaviest['goodput_ratio']:.2f}x at {heaviest['load']} ({spread}); "
                f"share meeting the SLO {_pct(heaviest['raw'].get('slo_met_fraction'))} vs "
                f"{_pct(heaviest['static'].get('slo_met_fraction'))}{'' if slo is None else f' ({slo:.2f}x)'}; "
                f"output tok/s {_num(tokens, 2)}x; on {machine(heaviest['data'])} (`{file}`)")  # fmt: skip
        claims.append(
            [BATCHING_CLAIM_TEXT, text, "yes" if heaviest["goodput_ratio"] >= BATCHING_CLAIM_MIN else "no"]
        )
    return claims


def _rate(load: str) -> float:
    value = load.partition("=")[2]
    try:
        return float(value)
    except ValueError:
        return -1.0


BATCHING_CLAIM_TEXT = "Continuous batching: 2-3x over static batching (online, Poisson arrivals)"
BATCHING_CLAIM_MIN = 2.0
