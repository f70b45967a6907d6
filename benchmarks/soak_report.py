"""The soak's numbers: outcomes by minute, the verdict, RSS per process, and the figure."""

from __future__ import annotations

import contextlib
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import percentile
from benchmarks.soak_load import Outcome

RSS_GROWTH_MAX = 0.10


def rss_by_process(pids: list[int]) -> dict[str, float]:
    """RSS in MiB of every process under ``pids``, named by role (the BentoML service a worker serves)."""
    found: dict[str, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    argv = proc.cmdline()
                    name = argv[argv.index("--service-name") + 1] if "--service-name" in argv else proc.name()
                    key = f"{name}[{proc.pid}]"
                    found[key] = round(proc.memory_info().rss / 2**20, 1)
    return found


def summarize(
    outcomes: list[Outcome], rss: dict[str, list[tuple[float, float]]], warmup_s: float
) -> dict[str, Any]:
    by_status = Counter(f"{o.kind}:{o.status}" for o in outcomes)
    lost = [o for o in outcomes if o.status == 0 and o.kind != "client_bound"]
    server_errors = [o for o in outcomes if o.status >= 500]
    refused = [o for o in outcomes if o.status == 429]  # admission, with Retry-After: not an error
    corrupted = [o for o in outcomes if not o.ok and 0 < o.status < 500 and o.status != 429]
    minutes: dict[int, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        minutes[int(o.at_s // 60)].append(o)
    per_minute = []
    for minute, group in sorted(minutes.items()):
        ms = [o.latency_s * 1e3 for o in group if o.ok and o.kind != "cancelled_stream"]
        per_minute.append({"minute": minute, "requests": len(group), "p50_ms": round(statistics.median(ms), 1) if ms else None,
                           "p99_ms": round(percentile(ms, 99), 1) if ms else None, "failed": sum(not o.ok for o in group)})  # fmt: skip
    growth = {}
    for name, samples in rss.items():
        after = [mib for at_s, mib in samples if at_s >= warmup_s]
        if len(after) >= 2:
            growth[name] = {
                "after_warmup_mib": after[0],
                "end_mib": after[-1],
                "growth": round(after[-1] / after[0] - 1, 4),
            }
    verdict = {
        "requests": len(outcomes),
        "lost": len(lost),
        "corrupted_or_wrong": len(corrupted),
        "server_errors_5xx": len(server_errors),
        "refused_429": len(refused),
        "client_bound_skipped": by_status.get("client_bound:0", 0),
        "max_rss_growth": max((g["growth"] for g in growth.values()), default=None),
        "rss_growth_max": RSS_GROWTH_MAX,
    }
    verdict["passed"] = (not lost and not corrupted and not server_errors
                         and (verdict["max_rss_growth"] or 0) < RSS_GROWTH_MAX)  # fmt: skip
    return {
        "by_kind_and_status": dict(sorted(by_status.items())),
        "examples_of_failures": sorted({o.error for o in [*lost, *corrupted, *server_errors]})[:10],
        "per_minute": per_minute,
        "rss_mib": {name: samples for name, samples in rss.items()},
        "rss_growth_after_warmup": growth,
        "verdict": verdict,
    }


def plot(path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, memory) = plt.subplots(1, 2, figsize=(15, 5))
    minutes = [m["minute"] for m in report["per_minute"]]
    for key in ("p50_ms", "p99_ms"):
        latency.plot(
            minutes, [m[key] for m in report["per_minute"]], marker="o", label=key.replace("_ms", "")
        )
    latency.set(title="latency of answered requests, per minute", xlabel="minute", ylabel="ms")
    latency.legend()
    for name, samples in report["rss_mib"].items():
        memory.plot([s[0] / 60 for s in samples], [s[1] for s in samples], label=name)
    memory.set(title="RSS per process", xlabel="minute", ylabel="MiB")
    memory.legend(fontsize=6, ncol=2)
    verdict = report["verdict"]
    fig.suptitle(f"soak: {verdict['requests']} requests at {report['rate_requests_per_s']} req/s "
                 f"({report['minutes']} min), lost {verdict['lost']}, wrong {verdict['corrupted_or_wrong']}, "
                 f"5xx {verdict['server_errors_5xx']}, max RSS growth {verdict['max_rss_growth']}", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
