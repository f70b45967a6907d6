"""The PNG of ``benchmarks.classic_batching``: rows/s and p99 against concurrency, and the sweep."""

from __future__ import annotations

from pathlib import Path

APIS = ("tabular", "text")


def plot(path: Path, cells: list[dict], sweep: list[dict], bounds: dict[str, int]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    colors = {"tabular": "tab:blue", "text": "tab:orange"}
    peer_colors = {"tabular": "tab:green", "text": "tab:olive"}
    for config, label in (("noop", "our no-op POST (ceiling)"), ("litserve-noop", "LitServe no-op POST")):
        own = [c for c in cells if c["model"] == "noop" and c["config"] == config]
        if own:  # each stack's HTTP ceiling, under its model lines
            style = "--" if config == "noop" else ":"
            xs = [c["concurrency"] for c in own]
            axes[0].plot(xs, [c["rows_per_s"] for c in own], style, color="gray", label=label)
            axes[1].plot(xs, [c["latency_ms"]["p99"] for c in own], style, color="gray", label=label)
    for model in APIS:
        for config, style in (("on", "-o"), ("off", "--s"), ("gateway", "-.D"), ("litserve-on", "-^"),
                              ("litserve-off", ":v")):  # fmt: skip
            own = [c for c in cells if c["model"] == model and c["config"] == config]
            if not own:
                continue
            xs = [c["concurrency"] for c in own]
            label = (
                f"{model}, LitServe batching {config[9:]}"
                if config.startswith("litserve")
                else f"{model}, through the gateway (public port)"
                if config == "gateway"
                else f"{model}, batching {config}"
            )
            color = peer_colors[model] if config.startswith("litserve") else colors[model]
            axes[0].plot(xs, [c["rows_per_s"] for c in own], style, color=color, label=label)
            axes[1].plot(xs, [c["latency_ms"]["p99"] for c in own], style, color=color, label=label)
        axes[1].axhline(bounds[model], color=colors[model], linewidth=0.8, linestyle=":",
                        label=f"{model} max_latency_ms (on)")  # fmt: skip
        points = sorted((c for c in sweep if c["model"] == model), key=lambda c: c["max_latency_ms"])
        xs = [c["max_latency_ms"] for c in points]
        axes[2].plot(
            xs, [c["rows_per_s"] for c in points], "-o", color=colors[model], label=f"{model} rows/s"
        )
        for c in points:
            axes[2].annotate(
                f"shed {c['shed_fraction']:.0%}", (c["max_latency_ms"], c["rows_per_s"]), fontsize=7
            )
    for ax, title, ylabel in (
        (axes[0], "Answered rows/s (1 row per request)", "rows/s"),
        (axes[1], "p99 latency of answered requests", "ms"),
        (axes[2], "Concurrency 64, batching on: max_latency_ms sweep", "rows/s"),
    ):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[0].set_xlabel("concurrency")
    axes[1].set_xlabel("concurrency")
    axes[2].set_xlabel("max_latency_ms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
