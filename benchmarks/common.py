"""Pieces every benchmark shares: run metadata, statistics, a closed-loop load driver, a minimal
HTTP client for latency floors, CPU accounting on a shared machine, and output (JSON, tables, PNG).

A result is one JSON file in ``benchmarks/results/`` carrying the machine, package versions, flags
and git commit it was measured with, plus a PNG beside it. Workloads, servers and targets belong in
each benchmark's own module, not here; servers are started with ``scripts.procs.BentoServer``, the
launcher the integration tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
GATEWAY_READY_TIMEOUT_S = 600  # it starts an LLM engine first (about 2 minutes for the tiny model on 2 cores)

T = TypeVar("T")


# --- run metadata ---------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """CPU model, usable cores, RAM, OS and Python of this machine."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib: float | None = None
    with contextlib.suppress(ValueError, OSError):
        ram_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu_model": cpu_model,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": ram_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed distribution versions (None for a missing one)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state() -> dict[str, Any]:
    """HEAD commit and whether the working tree differs from it (a result from a dirty tree says so)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def command_line(scenario: str, argv: Sequence[str] | None = None) -> list[str]:
    """How a run was started, as ``python -m benchmarks <scenario> ...`` (the report prints it): ``argv``
    as given to the scenario's main(), else the process's own arguments."""
    return ["python", "-m", "benchmarks", scenario, *(sys.argv[1:] if argv is None else argv)]


def cosines(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (vectors of two stacks or paths)."""
    return [float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b, strict=True)]


def run_metadata(benchmark: str, packages: Iterable[str]) -> dict[str, Any]:
    """The header of every result file."""
    return {
        "benchmark": benchmark,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine_info(),
        "gpus": gpu_names(),
        "versions": package_versions(*packages),
    }


def gpu_names() -> list[str]:
    """GPU names from nvidia-smi, [] where there is none (the CPU machine)."""
    if not shutil.which("nvidia-smi"):
        return []
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


# --- statistics -----------------------------------------------------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated between order statistics (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, mean and max of latencies given in seconds, in milliseconds."""
    return {
        "p50": round(percentile(seconds, 50) * 1e3, 3),
        "p90": round(percentile(seconds, 90) * 1e3, 3),
        "p99": round(percentile(seconds, 99) * 1e3, 3),
        "mean": round(sum(seconds) / len(seconds) * 1e3, 3),
        "max": round(max(seconds) * 1e3, 3),
        "n": len(seconds),
    }


# --- load driver ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadResult(Generic[T]):
    """What a closed-loop run saw: wall time of the whole run, each call's latency and result."""

    wall_s: float
    latencies_s: list[float]
    results: list[T]


async def closed_loop(calls: Sequence[Callable[[], Awaitable[T]]], concurrency: int) -> LoadResult[T]:
    """Run ``calls`` with ``concurrency`` workers, each starting its next call as soon as one returns.

    Calls are taken in order; results and latencies come back in the same order. The wall time runs
    from the first call's start to the last call's end.
    """
    latencies = [0.0] * len(calls)
    results: list[Any] = [None] * len(calls)
    pending = iter(range(len(calls)))

    async def worker() -> None:
        for index in pending:  # a shared iterator: each index goes to exactly one worker
            started = time.perf_counter()
            results[index] = await calls[index]()
            latencies[index] = time.perf_counter() - started

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(calls)))))
    return LoadResult(time.perf_counter() - started, latencies, results)


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection with next to no client cost (~0.1 ms a request), to measure
    server latency without the client's own overhead (httpx spends ~1 ms of CPU per request here).

    It parses only what framing needs (status, Content-Length or chunked); one request at a time;
    no TLS, redirects or compression. Use a real client for anything else.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawHttpClient:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """(status, body) of one request."""
        assert self._reader is not None and self._writer is not None, "use `async with`"
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-length: {len(body)}\r\n"
        if body:
            head += f"content-type: {content_type}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        status_line, *header_lines = (await self._reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        headers = dict(line.lower().split(b":", 1) for line in header_lines if b":" in line)
        status = int(status_line.split()[1])
        if b"content-length" in headers:
            return status, await self._reader.readexactly(int(headers[b"content-length"]))
        if headers.get(b"transfer-encoding", b"").strip() != b"chunked":
            raise ValueError("response has neither content-length nor chunked encoding")
        parts = []
        while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await self._reader.readexactly(size + 2))[:-2])
        await self._reader.readuntil(b"\r\n")  # the blank line after the last chunk (no trailers sent)
        return status, b"".join(parts)


# --- CPU accounting -------------------------------------------------------------------------------
# The machine may be shared (other jobs, the server under test, the client): wall-clock rates say
# little without knowing who else used the cores. These meters say it (to the kernel's clock tick,
# 10 ms: meter blocks of a second or more).
def _tree_cpu_s(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _busy_cpu_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class CpuMeter:
    """CPU seconds used during a ``with`` block by this process, by ``server_pids`` (with their
    children), and by everything else on the machine (``foreign``: other users of the cores)."""

    def __init__(self, server_pids: Sequence[int] = ()) -> None:
        self.server_pids = list(server_pids)
        self.wall_s = self.own_s = self.server_s = self.foreign_s = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = (time.perf_counter(), time.process_time(), _tree_cpu_s(self.server_pids), _busy_cpu_s())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, own, server, busy = self._start
        self.wall_s = time.perf_counter() - wall
        self.own_s = time.process_time() - own
        self.server_s = _tree_cpu_s(self.server_pids) - server
        self.foreign_s = max(0.0, _busy_cpu_s() - busy - self.own_s - self.server_s)

    @property
    def foreign_cores(self) -> float:
        """Average number of cores other jobs kept busy during the block."""
        return self.foreign_s / self.wall_s if self.wall_s else 0.0

    def to_json(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s, 4),
            "own_cpu_s": round(self.own_s, 4),
            "server_cpu_s": round(self.server_s, 4),
            "foreign_cpu_s": round(self.foreign_s, 4),
            "foreign_cores": round(self.foreign_cores, 3),
        }


def wait_for_quiet(
    server_pids: Sequence[int] = (),
    max_foreign_cores: float = 0.25,
    window_s: float = 1.0,
    timeout_s: float = 60,
) -> float:
    """Wait (at most ``timeout_s``) until other jobs use at most ``max_foreign_cores`` over ``window_s``;
    returns the last load seen, so a result can say how quiet the machine was when it started."""
    deadline = time.monotonic() + timeout_s
    while True:
        with CpuMeter(server_pids) as meter:
            time.sleep(window_s)
        if meter.foreign_cores <= max_foreign_cores or time.monotonic() >= deadline:
            return meter.foreign_cores


# --- output ---------------------------------------------------------------------------------------
def named_changes(spec: str) -> tuple[str, dict[str, str]]:
    """A ``--variant`` of any benchmark: ``NAME:KEY=VALUE[,KEY=VALUE]`` -> (name, {key: value})."""
    name, _, changes = spec.partition(":")
    return name, {key: value for key, _, value in (change.partition("=") for change in changes.split(","))}


def write_result(name: str, result: Mapping[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """``<directory>/<name>.json`` (``benchmarks/results/`` by default), written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (pastes into README and issue notes as is)."""
    cells = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


@dataclass(frozen=True)
class BarPanel:
    """One bar chart of a figure: labelled values, optional dashed reference lines."""

    title: str
    ylabel: str
    values: Mapping[str, float]
    references: Mapping[str, float] | None = None
    log_scale: bool = False


def save_bar_panels(path: Path, panels: Sequence[BarPanel], suptitle: str = "", columns: int = 2) -> Path:
    """Bar charts in a grid, ``columns`` wide, in one PNG (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        labels = list(panel.values)
        bars = ax.bar(range(len(labels)), list(panel.values.values()), color="tab:blue")
        ax.bar_label(bars, fmt="{:,.3g}", fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.ylabel)
        if panel.log_scale:
            ax.set_yscale("log")
        for (label, value), color in zip(
            (panel.references or {}).items(), ("tab:red", "tab:green", "tab:gray"), strict=False
        ):
            ax.axhline(value, linestyle="--", linewidth=1, color=color, label=label)
        if panel.references:
            ax.legend(fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
