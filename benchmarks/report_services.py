"""REPORT.md's sections on the batched services and the whole Bento under load: classic ML with
adaptive batching on vs off and vs LitServe, the embedding cache (hits vs misses, vs infinity-emb) and
the soak run. Built on benchmarks/report.py's helpers."""

from __future__ import annotations

from typing import Any

from benchmarks.report import _num, machine, table


def classic_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, data in results:
        if data["benchmark"] != "classic_batching":
            continue
        summary = data["summary"]
        for model in ("tabular", "text"):
            s = summary.get(model)
            if s:
                rows.append([f"`{name}`", machine(data), model, str(summary["concurrency"]),
                             _num(s["on_rows_per_s"]), _num(s["off_rows_per_s"]), f"**{_num(s['speedup'], 2)}x**",
                             _num(s["on_p99_ms"]), f"{s['on_shed_fraction']:.1%}"])  # fmt: skip
    head = ["file", "machine", "model", "clients", "batched rows/s", "unbatched rows/s", "ratio",
            "batched p99 ms", "shed"]  # fmt: skip
    return ["## 4. Classic ML: adaptive batching on vs off (`python -m benchmarks classic_batching`)", "",
            *table(head, rows), ""]  # fmt: skip


def peers_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Ours vs a dedicated peer serving the same model, same client, same run (``litserve_ratio``), each
    over its own stack's no-op POST rate; then those no-op ceilings and the issue's 90% target."""
    rows, ceilings = [], []
    for name, data in results:
        summary = (data.get("summary") or {}) if data["benchmark"] == "classic_batching" else {}
        for model, loads in _by_model(summary.get("versus_litserve") or {}).items():
            for load, v in loads.items():
                rows.append([f"`{name}`", machine(data), model, load, _num(v["ours_rows_per_s"]),
                             f"{_num(v['litserve_rows_per_s'])} ({v['litserve_mode']})", f"**{v['litserve_ratio']:.2f}x**",
                             f"{_num(v['ours_p99_ms'])} / {_num(v['litserve_p99_ms'])}", str(v["ours_503"]),
                             f"{_pct(v.get('ours_of_noop'))} / {_pct(v.get('litserve_of_noop'))}", _gateway(v)])  # fmt: skip
        noop = summary.get("noop_ceilings") or {}
        target = noop.get("target") or {}
        for load, v in noop.items():
            if load == "target":
                continue
            judged = target and load == f"concurrency={target['concurrency']}"
            verdict = (f"{_pct(target['tabular_of_noop'])}: {'yes' if target['met'] else '**no**'}"
                       if judged else "-")  # fmt: skip
            ceilings.append([f"`{name}`", machine(data), load, _num(v.get("ours_rows_per_s")),
                             _num(v.get("litserve_rows_per_s")),
                             f"{_num(v.get('ours_p99_ms'))} / {_num(v.get('litserve_p99_ms'))}", verdict])  # fmt: skip
    head = ["file", "machine", "model", "load", "ours rows/s (batched)", "LitServe rows/s (better mode)",
            "litserve_ratio", "p99 ms ours / LitServe", "our 503s", "of own no-op ceiling ours / LitServe",
            "through the gateway: rows/s, litserve_ratio, p99 ms"]  # fmt: skip
    out = ["## 4b. Classic ML vs LitServe, same stored models (`make bench-classic-peers`)", "",
           *table(head, rows), ""]  # fmt: skip
    if ceilings:
        head = ["file", "machine", "load", "ours no-op rows/s", "LitServe no-op rows/s",
                "p99 ms ours / LitServe", "our batched tabular / our no-op (target >= 90%)"]  # fmt: skip
        out += ["No-op POST ceilings: each stack answering the tabular body with no model work (ours: "
                "benchmarks/noop_service.py on ClassicML's process model; LitServe: a LitAPI that returns "
                "its input), same client and concurrency.", "", *table(head, ceilings), ""]  # fmt: skip
    return out


def _gateway(v: dict[str, Any]) -> str:
    """The same cell at the whole Bento's public port (``--gateway``), where the run measured it."""
    if "gateway_rows_per_s" not in v:
        return "-"
    return _at_public_port(v["gateway_rows_per_s"], v["gateway_litserve_ratio"], v["gateway_p99_ms"])


def _at_public_port(rate: float, ratio: float, p99_ms: float | None) -> str:
    return f"{_num(rate)}, **{ratio:.2f}x**, {_num(p99_ms)}"


def _by_model(versus: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model, per load. Files written before the text peer held the tabular model's loads alone."""
    if any("ours_rows_per_s" in v for v in versus.values()):
        return {"tabular": versus}
    return versus


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def embedding_peers_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Embedding misses vs infinity-emb, same model, same client, same run (``infinity_ratio``)."""
    rows = []
    for name, data in results:
        if data["benchmark"] != "embedding_peers":
            continue
        for cell, s in data["summary"].items():
            ours, peer = s["ours"], s["infinity"]
            rows.append([f"`{name}`", machine(data), cell, _num(ours["texts_per_s"]), _num(peer["texts_per_s"]),
                         f"**{s['infinity_ratio']:.2f}x**", f"{_num(ours['p99_ms'])} / {_num(peer['p99_ms'])}",
                         f"{ours['refused']} / {peer['refused']}", _embedding_gateway(s)])  # fmt: skip
    head = ["file", "machine", "texts per request x clients", "ours texts/s", "infinity-emb texts/s",
            "infinity_ratio", "p99 ms ours / infinity", "refused ours / infinity",
            "through the gateway: texts/s, infinity_ratio, p99 ms"]  # fmt: skip
    return ["## 5c. Embedding misses vs infinity-emb, same model (`make bench-embedding-peers`)", "",
            *table(head, rows), ""]  # fmt: skip


def _embedding_gateway(cell: dict[str, Any]) -> str:
    """The same cell at the whole Bento's public port (``--gateway``), where the run measured it."""
    v = (cell.get("variants") or {}).get("gateway")
    return _at_public_port(v["texts_per_s"], v["infinity_ratio"], v["p99_ms"]) if v else "-"


def embedding_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, data in results:
        if data["benchmark"] != "embedding_cache":
            continue
        for cell in data.get("summary", []):
            rows.append([f"`{name}`", machine(data), cell["encoding_format"], str(cell["concurrency"]),
                         _num(cell["raw_texts_per_s"]["value"]), _num(cell["miss_texts_per_s"]["value"]),
                         _num(cell["hit_texts_per_s"]["value"]), f"**{cell['hit_over_miss']['value']:.1f}x**"])  # fmt: skip
    head = ["file", "machine", "format", "clients", "raw encode texts/s", "miss texts/s", "hit texts/s",
            "hit / miss"]  # fmt: skip
    return ["## 5. Embedding cache: hits vs misses vs raw encode (`python -m benchmarks embedding_cache`)",
            "", *table(head, rows), ""]  # fmt: skip


def soak_section(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, data in results:
        if data["benchmark"] != "soak":
            continue
        v = data["verdict"]
        rows.append([f"`{name}`", machine(data), f"{data['minutes']:g} min at {data['rate_requests_per_s']:.0f} req/s "
                     f"(peak {data['peak_requests_per_s']:.0f})", f"{v['requests']:,}", str(v["lost"]),
                     str(v["corrupted_or_wrong"]), str(v["server_errors_5xx"]), f"{v['max_rss_growth']:.1%}",
                     "yes" if v["passed"] else "**no**"])  # fmt: skip
    head = ["file", "machine", "load", "requests", "lost", "wrong", "5xx", "max RSS growth", "passed"]
    return ["## 6. Soak: the whole Bento under mixed load (`python -m benchmarks soak`)", "",
            *table(head, rows), ""]  # fmt: skip
