"""Where each process's CPU goes under closed-loop load on one classic route: ClassicML alone, then the
whole Bento at its public port, one server at a time on this machine.

    python -m benchmarks profile_workers --out DIR [--model text] [--concurrency 8] [--duration 20]

Per server: the cell as ``classic_batching`` measures it (benchmarks/classic_load.py: rows/s, latency,
mean batch), each process's CPU seconds over that cell (its 2 s warm-up included), and py-spy's raw
collapsed stacks of every BentoML worker (10 s at 200 Hz, from 4 s into the cell) in
``DIR/<server>.<pid>.raw``. ``DIR/profile_workers.json`` holds the numbers. Servers take the settings of
this process's environment (e.g. ``INFSTACK_EMBEDDING__DEVICE=cuda:0``).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import psutil

from benchmarks.classic_batching import serve
from benchmarks.classic_load import APIS, Workload, measure
from benchmarks.common import GATEWAY_READY_TIMEOUT_S, run_metadata, write_result
from models.ensure import ensure_all
from models.train_classic import ensure_models
from scripts.deployments import CLASSIC_TARGET, GATEWAY_TARGET
from scripts.procs import BentoServer, process_tree

NAME = "profile_workers"
SERVERS = {"classic": (CLASSIC_TARGET, 180.0), "gateway": (GATEWAY_TARGET, GATEWAY_READY_TIMEOUT_S)}
SPY_AFTER_S, SPY_FOR_S, SPY_RATE_HZ = 4.0, 10, 200


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[pid] = times.user + times.system
    return seconds


def profile(server: BentoServer, name: str, args: argparse.Namespace) -> dict[str, Any]:
    assert server.proc is not None
    processes = {}
    for pid, _ in process_tree(server.proc.pid):
        try:
            process = psutil.Process(pid)
            processes[pid] = (" ".join(process.cmdline()) or process.name())[:200]  # EngineCore: a title only
        except psutil.NoSuchProcess:
            continue
    workers = [pid for pid, cmd in processes.items() if "_bentoml_impl.worker" in cmd]
    spies: list[subprocess.Popen[bytes]] = []

    def spy() -> None:
        for pid in workers:
            argv = [args.pyspy, "record", "--nonblocking", "-d", str(SPY_FOR_S), "-r", str(SPY_RATE_HZ),
                    "-p", str(pid), "-f", "raw", "-o", str(args.out / f"{name}.{pid}.raw")]  # fmt: skip
            spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    before = cpu_seconds(list(processes))
    timer = threading.Timer(SPY_AFTER_S, spy)
    timer.start()
    cell = measure(server, Workload(), args.model, args.concurrency, args.duration)
    after = cpu_seconds(list(processes))
    timer.cancel()
    for spied in spies:
        spied.wait()
    cell["process_cpu_s"] = {
        str(pid): {"cmd": cmd, "cpu_s": round(after[pid] - before[pid], 2)}
        for pid, cmd in processes.items()
        if pid in before and pid in after
    }
    return cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the stacks and the JSON")
    parser.add_argument("--model", choices=sorted(APIS), default="text")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20, help="seconds measured per server")
    parser.add_argument("--pyspy", default="py-spy", help="the py-spy executable")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = ensure_models()
    ensure_all()  # the LLM the gateway's defaults serve
    cells = {}
    with tempfile.TemporaryDirectory(prefix="profile-workers-") as tmp:
        for name, (target, ready_timeout_s) in SERVERS.items():
            server = serve(name, Path(tmp), models, {}, target, ready_timeout_s)
            try:
                cells[name] = profile(server, name, args)
            finally:
                server.stop()
            print(f"{name}: {cells[name]['rows_per_s']} rows/s, batch {cells[name]['mean_batch_rows']}, "
                  f"p50 {(cells[name]['latency_ms'] or {}).get('p50')} ms", flush=True)  # fmt: skip
    argv = {**vars(args), "out": str(args.out)}
    result = {
        **run_metadata(NAME, ("bentoml", "torch", "sentence-transformers")),
        "argv": argv,
        "cells": cells,
    }
    write_result(NAME, result, args.out)


if __name__ == "__main__":
    main()
