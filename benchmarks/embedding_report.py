"""From the blocks ``benchmarks.embedding_load`` measured to the result of ``benchmarks.embedding_cache``:
per-config summaries, target verdicts, the printed tables and the PNG.

Other people's jobs share the cores, so every value is a median over rounds, taken over the quiet ones
when there are any, and carries its ``basis``; ratios are formed within a round (paired blocks) first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import BarPanel, format_table, latency_summary_ms, percentile, save_bar_panels
from benchmarks.embedding_load import FORMATS, Bench, Measured

HIT_RATIO_TARGET = 20.0
MISS_VS_RAW_TARGET = 0.8
HIT_P50_TARGET_MS = 2.0
QUIET_CORES = 0.25  # a block counts as quiet when other jobs kept at most this many cores busy


# --- summary -------------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summarize(blocks: Sequence[Measured]) -> list[dict[str, Any]]:
    """Per format and concurrency. Each value is a median over rounds, taken over the quiet rounds when
    there are any (see ``pick``); ratios are formed within a round (paired blocks), then summarized."""
    configs = dict.fromkeys((m.encoding_format, m.concurrency) for m in blocks if m.path == "miss")
    rows = []
    for fmt, c in configs:
        by_path: dict[str, list[Measured]] = {}
        for m in blocks:
            if (m.encoding_format, m.concurrency) == (fmt, c):
                by_path.setdefault(m.path, []).append(m)
        raw, chunked, miss, hit = (by_path.get(k, []) for k in ("raw", "raw_chunks", "miss", "hit"))
        rows.append(
            {
                "encoding_format": fmt,
                "concurrency": c,
                "raw_texts_per_s": pick([(r.texts_per_s, quiet(r)) for r in raw]),
                "raw_per_request_texts_per_s": pick([(r.texts_per_s, quiet(r)) for r in chunked])
                if chunked
                else None,
                "miss_texts_per_s": pick([(m.texts_per_s, quiet(m)) for m in miss]),
                "hit_texts_per_s": pick([(h.texts_per_s, quiet(h)) for h in hit]),
                "hit_over_miss": pick(
                    [(h.texts_per_s / m.texts_per_s, quiet(h, m)) for h, m in zip(hit, miss, strict=True)]
                ),
                "miss_over_raw": pick(
                    [(m.texts_per_s / r.texts_per_s, quiet(m, r)) for m, r in zip(miss, raw, strict=True)]
                ),
                "miss_over_raw_per_request": pick(
                    [(m.texts_per_s / r.texts_per_s, quiet(m, r)) for m, r in zip(miss, chunked, strict=True)]
                )
                if chunked
                else None,
                # Diagnostics: CPU seconds (server + client, or the raw process) per text, and how much of a
                # miss run's wall time the server's model was busy (the rest is serving overhead and waits).
                "cpu_ms_per_text": {
                    k: round(median([m.cpu_ms_per_text for m in v]), 3) for k, v in by_path.items()
                },
                "server_model_share_of_miss_wall": pick(
                    [(m.server_model_s / m.wall_s, quiet(m)) for m in miss if m.server_model_s is not None]
                ),
                "miss_requests_shed": sum(m.shed for m in miss),
                "miss_request_p50_ms": round(median([percentile(m.latencies_s, 50) for m in miss]) * 1e3, 1),
                "hit_request_p50_ms": round(median([percentile(m.latencies_s, 50) for m in hit]) * 1e3, 2),
            }
        )
    return rows


def quiet(*blocks: Measured) -> bool:
    return all(b.cpu["foreign_cores"] <= QUIET_CORES for b in blocks)


def pick(samples: Sequence[tuple[float, bool]]) -> dict[str, Any] | None:
    """``value``: the median over quiet rounds if any round was quiet, else over all rounds (``basis``
    says which), so other people's jobs on the shared cores do not decide the result."""
    if not samples:
        return None
    calm = [v for v, q in samples if q]
    chosen = calm or [v for v, _ in samples]
    return {
        "value": round(median(chosen), 3),
        "basis": f"quiet {len(calm)}/{len(samples)}" if calm else f"all {len(samples)} (none quiet)",
        "all_rounds": [round(v, 3) for v, _ in samples],
        "quiet_rounds": [q for _, q in samples],
    }


def after_load(blocks: Sequence[Measured]) -> dict[str, Any] | None:
    """The concurrency-1 miss run right after concurrent load, against the same format's earlier ones."""
    probe = [m for m in blocks if m.path == "miss_after_load"]
    if not probe:
        return None
    (m,) = probe
    before = [
        b for b in blocks if (b.path, b.concurrency, b.encoding_format) == ("miss", 1, m.encoding_format)
    ]
    return {
        "encoding_format": m.encoding_format,
        "texts_per_s": round(m.texts_per_s, 1),
        "before_load_texts_per_s": pick([(b.texts_per_s, quiet(b)) for b in before]),
        "server_model_share_of_wall": round(m.server_model_s / m.wall_s, 3) if m.server_model_s else None,
        "request_latency_ms": latency_summary_ms(m.latencies_s),
        "other_jobs_cores": m.cpu["foreign_cores"],
        "shed": m.shed,
    }


def single_hit_summary(bench: Bench) -> dict[str, Any]:
    """Per client: latency per format (and GET /livez), pooled over the quiet rounds if any, else all."""
    out: dict[str, Any] = {}
    for (client, what), rounds in bench.single.items():
        calm = [r for r in rounds if r["foreign_cores"] <= QUIET_CORES]
        chosen = calm or rounds
        summary = latency_summary_ms([x for r in chosen for x in r["latencies_s"]])
        summary["rounds_p50_ms"] = [round(percentile(r["latencies_s"], 50) * 1e3, 3) for r in rounds]
        summary["basis"] = f"quiet {len(calm)}/{len(rounds)}" if calm else f"all {len(rounds)} (none quiet)"
        for key in ("server_cpu_ms_per_request", "client_cpu_ms_per_request"):
            summary[key] = round(median([r[key] for r in chosen]), 3)
        out.setdefault(client, {})[what] = summary
    return out


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target where it applies, from wall-clock rates as the issue defines them."""
    targets: list[dict[str, Any]] = []

    def add(name: str, where: str, value: float, basis: str, threshold: float, at_least: bool) -> None:
        met = value >= threshold if at_least else value <= threshold
        targets.append({"target": name, "where": where, "value": value, "basis": basis, "met": met})

    for row in result["summary"]:
        where = f"{row['encoding_format']}, {row['concurrency']} client(s)"
        for name, key, threshold in (
            (f"100%-hit texts/s >= {HIT_RATIO_TARGET:g}x 0%-hit", "hit_over_miss", HIT_RATIO_TARGET),
            (f"0%-hit texts/s >= {MISS_VS_RAW_TARGET:g}x raw encode", "miss_over_raw", MISS_VS_RAW_TARGET),
        ):
            add(name, where, row[key]["value"], row[key]["basis"], threshold, True)
    for client, by_what in result["single_hit"].items():
        for fmt in FORMATS:
            s = by_what[fmt]
            add(
                f"1-text hit p50 <= {HIT_P50_TARGET_MS:g} ms",
                f"{fmt}, {client} client",
                s["p50"],
                s["basis"],
                HIT_P50_TARGET_MS,
                False,
            )
    return targets


def plot(path: Path, result: dict[str, Any], title: str) -> Path:
    summary, single = result["summary"], result["single_hit"]
    label = "{encoding_format} c={concurrency}".format_map
    throughput = {}
    for row in summary:
        for key, short in (
            ("raw_texts_per_s", "raw"),
            ("miss_texts_per_s", "0%"),
            ("hit_texts_per_s", "100%"),
        ):
            throughput[f"{short} {label(row)}"] = row[key]["value"]
    latency = {
        f"{what} {client}": s["p50"] for client, by_what in single.items() for what, s in by_what.items()
    }
    return save_bar_panels(
        path,
        [
            BarPanel("Throughput, 64-text requests", "texts/s (log)", throughput, log_scale=True),
            BarPanel(
                "100%-hit / 0%-hit texts/s",
                "ratio",
                {label(r): r["hit_over_miss"]["value"] for r in summary},
                {f"target {HIT_RATIO_TARGET:g}x": HIT_RATIO_TARGET},
            ),
            BarPanel(
                "0%-hit / raw encode texts/s",
                "ratio",
                {label(r): r["miss_over_raw"]["value"] for r in summary},
                {f"target {MISS_VS_RAW_TARGET:g}": MISS_VS_RAW_TARGET},
            ),
            BarPanel(
                "1 request at a time: p50 latency",
                "ms",
                latency,
                {f"target {HIT_P50_TARGET_MS:g} ms": HIT_P50_TARGET_MS},
            ),
        ],
        suptitle=title,
    )


def report(result: dict[str, Any]) -> str:
    b, rounds = result["params"]["batch_size"], result["params"]["rounds"]

    def v(stat: dict[str, Any] | None, fmt: str = "{:,.0f}") -> str:
        return "-" if stat is None else fmt.format(stat["value"])

    throughput = format_table(
        [
            "format",
            "clients",
            "raw encode",
            f"raw, {b}/call",
            "0% hit",
            "100% hit",
            "hit/miss",
            "miss/raw",
            "model busy",
            "miss 503s",
            "CPU ms/text raw|miss|hit",
            "quiet rounds",
        ],
        [
            [
                r["encoding_format"],
                r["concurrency"],
                v(r["raw_texts_per_s"]),
                v(r["raw_per_request_texts_per_s"]),
                v(r["miss_texts_per_s"]),
                v(r["hit_texts_per_s"]),
                v(r["hit_over_miss"], "{:.0f}x"),
                v(r["miss_over_raw"], "{:.2f}"),
                v(r["server_model_share_of_miss_wall"], "{:.0%}"),
                r["miss_requests_shed"],
                " | ".join(f"{r['cpu_ms_per_text'][k]:.2f}" for k in ("raw", "miss", "hit")),
                r["miss_over_raw"]["basis"],
            ]
            for r in result["summary"]
        ],
    )
    latency = format_table(
        [
            "one request at a time",
            "client",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "server CPU ms",
            "client CPU ms",
            "rounds",
        ],
        [
            [
                f"1-text cache hit, {what}" if what != "livez" else "GET /livez (floor)",
                client,
                s["p50"],
                s["p90"],
                s["p99"],
                s["server_cpu_ms_per_request"],
                s["client_cpu_ms_per_request"],
                s["basis"],
            ]
            for client, by_what in result["single_hit"].items()
            for what, s in by_what.items()
        ],
    )
    verdicts = format_table(
        ["target", "where", "value", "rounds", "met"],
        [
            [t["target"], t["where"], t["value"], t["basis"], "yes" if t["met"] else "NO"]
            for t in result["targets"]
        ],
    )
    lines = [
        f"texts/s, {b} texts per request, median of {rounds} rounds (quiet rounds when there are any: other "
        f"jobs <= {QUIET_CORES} cores)",
        throughput,
        "",
        latency,
        "",
        verdicts,
    ]
    if probe := result["miss_after_load"]:
        before = probe["before_load_texts_per_s"]
        lines += [
            "",
            f"0% hit, 1 client, right after concurrent load ({probe['encoding_format']}): "
            f"{probe['texts_per_s']:,.0f} texts/s (before: {v(before)}), model busy "
            f"{probe['server_model_share_of_wall']:.0%} of the time, other jobs {probe['other_jobs_cores']} cores",
        ]
    lines += ["", f"runtime {result['runtime_s']:.0f} s"]
    return "\n".join(lines)
