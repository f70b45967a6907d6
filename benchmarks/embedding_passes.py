"""One embedding forward pass, eager vs replayed CUDA graphs (services/embedding/cuda_graphs.py), in one
process: wall and CPU milliseconds per pass by texts per pass, and whether the vectors agree. A diagnostic
of the model call alone; the product's figures come from embedding_peers and classic_batching at the port.

    python -m benchmarks embedding_passes --device cuda:0 --out benchmarks/results/embedding_passes_gpu.json
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BarPanel, command_line, cosines, run_metadata, save_bar_panels, write_result
from benchmarks.embedding_load import sentences


def _per_pass(encode: Callable[[list[str]], np.ndarray], batches: list[list[str]]) -> dict[str, float]:
    """Mean wall and CPU (this process, every thread) milliseconds per pass over ``batches``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        encode(batch)
    passes = len(batches)
    return {
        "wall_ms": round((time.perf_counter() - wall) * 1000 / passes, 3),
        "cpu_ms": round((time.process_time() - cpu) * 1000 / passes, 3),
    }


def main(argv: list[str] | None = None) -> None:
    from services.embedding.cuda_graphs import GraphedEncoder
    from services.embedding.model import DEFAULT_MODEL_ID, encode_batch, load_sentence_model, max_tokens

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0", help="a cuda device: graphs need one")
    parser.add_argument("--texts", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--passes", type=int, default=200, help="passes per cell")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embedding_passes.json"))
    args = parser.parse_args(argv)

    model = load_sentence_model(DEFAULT_MODEL_ID, args.device)
    started = time.perf_counter()
    graphed = GraphedEncoder(model, max(args.texts), max(args.texts) * max_tokens(model))
    capture_s = time.perf_counter() - started
    rng, seen = random.Random(0), set[str]()
    cells: list[dict[str, Any]] = []
    for count in args.texts:
        batches = [sentences(count, rng, seen) for _ in range(args.passes)]
        eager, graphs = encode_batch(model, batches[0]), graphed.encode(batches[0])
        cosine = min(cosines(eager, graphs))
        runs: dict[str, list[dict[str, float]]] = {"eager": [], "graphs": []}
        for _ in range(2):  # alternated, so neither side alone meets a slow moment of the host
            runs["eager"].append(_per_pass(lambda batch: encode_batch(model, batch), batches))
            runs["graphs"].append(_per_pass(graphed.encode, batches))
        cell: dict[str, Any] = {"texts": count, "min_cosine": round(cosine, 6)}
        cell |= {side: min(both, key=lambda run: run["wall_ms"]) for side, both in runs.items()}
        cell["cpu_ratio"] = round(cell["eager"]["cpu_ms"] / cell["graphs"]["cpu_ms"], 2)
        cell["wall_ratio"] = round(cell["eager"]["wall_ms"] / cell["graphs"]["wall_ms"], 2)
        cells.append(cell)
        print(cell, flush=True)
    result = {
        **run_metadata("embedding_passes", ["torch", "sentence-transformers", "transformers"]),
        "argv": command_line("embedding_passes", argv),
        "graphs": graphed.graph_count,
        "capture_s": round(capture_s, 2),
        "cells": cells,
    }
    path = write_result(args.out.stem, result, args.out.parent)
    save_bar_panels(path.with_suffix(".png"), [
        BarPanel(f"{kind} ms per pass ({args.device})", "ms", {
            f"{cell['texts']} {side}": cell[side][f"{kind}_ms"] for cell in cells for side in ("eager", "graphs")
        }, log_scale=True)
        for kind in ("wall", "cpu")
    ], suptitle=f"MiniLM forward pass: eager vs CUDA graphs ({graphed.graph_count} captured)")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
