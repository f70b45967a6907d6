"""The peers of ``benchmarks.classic_batching``: LitServe serving the same stored models, and each stack's
no-op HTTP ceiling, measured with the same client, bodies and concurrency as ours.

- LitServe (``--litserve-python``, ``make peers``): the tabular booster file (benchmarks/peers/
  litserve_classic.py) and MiniLM + the text classifier file (litserve_text.py), each batched (64 rows,
  10 ms) and not. Before measuring, each peer answers the reference bodies ours answered at start-up:
  the labels must be the same (``agreement`` in the result), or the run stops.
- Ceilings: ours is benchmarks/noop_service.py (our process model and middleware, no model work); LitServe's
  a LitAPI that returns its input. Both get the tabular body. A model path's rows/s over its own stack's
  ceiling says how much of what that HTTP stack allows the model path reaches.

Target (issue 16): our batched tabular rows/s at the highest concurrency >= 90% of our no-op rate.
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx

from benchmarks.classic_load import ROUTES, Workload, quietest, report
from benchmarks.peers import PeerServer, litserve_noop, litserve_tabular, litserve_text
from scripts.procs import BentoServer

NOOP_TARGET = "benchmarks.noop_service:NoOp"
CEILING_TARGET = 0.9
REFERENCE_ROWS = 20


def reference_answers(server: BentoServer, workload: Workload) -> dict[str, list[tuple[dict, list]]]:
    """``REFERENCE_ROWS`` bodies per model and our answers to them: what every peer must agree with."""
    out: dict[str, list[tuple[dict, list]]] = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for model in ("tabular", "text"):
            bodies = [workload.body(model) for _ in range(REFERENCE_ROWS)]
            out[model] = [(b, _answers(client.post(f"/{ROUTES[model]}", json=b))) for b in bodies]
    return out


def _answers(response: httpx.Response) -> list[tuple[str, list[float]]]:
    """(label, probabilities in class order) per row, from our list or a LitServe ``predictions`` body."""
    response.raise_for_status()
    body = response.json()
    rows = body["predictions"] if isinstance(body, dict) else body
    return [(r["label"], list(r["probabilities"].values()) if isinstance(r["probabilities"], dict)
             else list(r["probabilities"])) for r in rows]  # fmt: skip


def agreement(peer: PeerServer, reference: list[tuple[dict, list]]) -> dict[str, Any]:
    """The peer's answers to our reference bodies: same labels (required) and the largest probability gap."""
    same, gap = 0, 0.0
    with httpx.Client(base_url=peer.url, timeout=60) as client:
        for body, ours in reference:
            theirs = _answers(client.post(peer.api_path, json=body))
            for (label, p), (peer_label, q) in zip(ours, theirs, strict=True):
                same += label == peer_label
                gap = max(gap, *(abs(a - b) for a, b in zip(p, q, strict=True)))
    result = {"rows": len(reference), "same_label": same, "max_abs_probability_diff": round(gap, 7)}
    if same != len(reference):
        raise RuntimeError(f"{peer.name} disagrees with ours: {result}")
    return result


def run_litserve(args: argparse.Namespace, ctx: dict) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """LitServe, batched and not, on each model's stored file: the cells, and each peer's agreement."""
    from services.classic.tabular import BOOSTER_FILE
    from services.classic.text import TEXT_FILE

    launch = {
        "tabular": lambda on, log: litserve_tabular(
            args.litserve_python, ctx["models"]["tabular"].path_of(BOOSTER_FILE), on, log
        ),
        "text": lambda on, log: litserve_text(
            args.litserve_python, ctx["models"]["text"].path_of(TEXT_FILE), on, log, ctx["encoder_device"]
        ),
    }
    cells, checks = [], {}
    for model, start in launch.items():
        for batching in (True, False):
            server = start(batching, ctx["workdir"] / f"litserve-{model}-{batching}.log").start()
            try:
                checks[f"{model} {server.name}"] = agreement(server, ctx["reference"][model])
                for concurrency in args.concurrency:
                    cell = {
                        "config": server.name,
                        **quietest(server, ctx["workload"], model, concurrency, args),
                    }
                    report(cell)
                    cells.append(cell)
            finally:
                server.stop()
    return cells, checks


def run_ceilings(args: argparse.Namespace, ctx: dict) -> list[dict[str, Any]]:
    """Each stack's no-op POST at every concurrency: ``noop`` (ours) and ``litserve-noop``."""
    servers: list[BentoServer | PeerServer] = [
        BentoServer(NOOP_TARGET, dict(ctx["env"]), ctx["workdir"] / "noop.log")
    ]
    if args.litserve_python:
        servers.append(litserve_noop(args.litserve_python, ctx["workdir"] / "litserve-noop.log"))
    cells = []
    for server in servers:
        server.start()
        try:
            for concurrency in args.concurrency:
                config = server.name if isinstance(server, PeerServer) else "noop"
                cell = {"config": config, **quietest(server, ctx["workload"], "noop", concurrency, args)}
                report(cell)
                cells.append(cell)
        finally:
            server.stop()
    return cells


def _at(cells: list[dict], config: str, model: str, concurrency: int) -> dict | None:
    return next((c for c in cells if (c["config"], c["model"], c["concurrency"]) == (config, model, concurrency)),
                None)  # fmt: skip


def _of(rate: float, ceiling: dict | None) -> float | None:
    return round(rate / ceiling["rows_per_s"], 3) if ceiling and ceiling["rows_per_s"] else None


def versus_litserve(cells: list[dict]) -> dict[str, Any]:
    """Per model and concurrency: our batched rows/s and p99 against LitServe's better mode there, and
    each over its own stack's no-op rate at that concurrency."""
    out: dict[str, Any] = {}
    for model in ("tabular", "text"):
        for concurrency in sorted({c["concurrency"] for c in cells}):
            ours = _at(cells, "on", model, concurrency)
            peers = [p for k in ("litserve-on", "litserve-off") if (p := _at(cells, k, model, concurrency))]
            if not ours or not peers:
                continue
            best = max(peers, key=lambda c: c["rows_per_s"])
            out.setdefault(model, {})[f"concurrency={concurrency}"] = {
                "ours_rows_per_s": ours["rows_per_s"], "litserve_rows_per_s": best["rows_per_s"],
                "litserve_mode": best["config"], "litserve_ratio": round(ours["rows_per_s"] / best["rows_per_s"], 3),
                "ours_p99_ms": (ours["latency_ms"] or {}).get("p99"), "litserve_p99_ms": (best["latency_ms"] or {}).get("p99"),
                "ours_503": ours["statuses"].get("503", 0),
                "ours_of_noop": _of(ours["rows_per_s"], _at(cells, "noop", "noop", concurrency)),
                "litserve_of_noop": _of(best["rows_per_s"], _at(cells, "litserve-noop", "noop", concurrency)),
            }  # fmt: skip
            if gateway := _at(cells, "gateway", model, concurrency):  # the same, at the Bento's public port
                out[model][f"concurrency={concurrency}"].update(
                    gateway_rows_per_s=gateway["rows_per_s"],
                    gateway_litserve_ratio=round(gateway["rows_per_s"] / best["rows_per_s"], 3),
                    gateway_p99_ms=(gateway["latency_ms"] or {}).get("p99"),
                    gateway_503=gateway["statuses"].get("503", 0),
                )
    return out


def noop_ceilings(cells: list[dict]) -> dict[str, Any]:
    """Each stack's no-op rows/s and p99 per concurrency, and the issue's target at the highest one."""
    out: dict[str, Any] = {}
    loads = sorted({c["concurrency"] for c in cells if c["model"] == "noop"})
    for concurrency in loads:
        entry = {}
        for key, config in (("ours", "noop"), ("litserve", "litserve-noop")):
            if cell := _at(cells, config, "noop", concurrency):
                entry[f"{key}_rows_per_s"] = cell["rows_per_s"]
                entry[f"{key}_p99_ms"] = (cell["latency_ms"] or {}).get("p99")
        out[f"concurrency={concurrency}"] = entry
    if loads and (on := _at(cells, "on", "tabular", loads[-1])):
        share = _of(on["rows_per_s"], _at(cells, "noop", "noop", loads[-1]))
        out["target"] = {"concurrency": loads[-1], "tabular_of_noop": share, "at_least": CEILING_TARGET,
                         "met": share is not None and share >= CEILING_TARGET}  # fmt: skip
    return out
