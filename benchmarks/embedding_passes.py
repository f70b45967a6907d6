"""One embedding forward pass, torch (eager) vs what the service runs instead on the device: replayed CUDA
graphs on cuda (services/embedding/cuda_graphs.py), ONNX Runtime on the cpu (services/embedding/onnx_pass.py),
in one process: wall and CPU milliseconds per pass by texts per pass, and whether the vectors agree. A
diagnostic of the model call alone; the product's figures come from embedding_peers and classic_batching.

    python -m benchmarks embedding_passes --device cuda:0 --out benchmarks/results/embedding_passes_gpu.json
    python -m benchmarks embedding_passes --device cpu --passes 40 --out benchmarks/results/embedding_passes_cpu.json
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


def _fast_encoder(
    model: Any, device: str, most_texts: int
) -> tuple[str, Callable[[list[str]], np.ndarray], int]:
    """The side measured against eager torch: its name, its encode, and the CUDA graphs it captured."""
    if device == "cpu":
        from services.embedding.onnx_pass import OnnxEncoder

        return "onnx", OnnxEncoder(model).encode, 0
    from services.embedding.cuda_graphs import GraphedEncoder
    from services.embedding.model import max_tokens

    graphed = GraphedEncoder(model, most_texts, most_texts * max_tokens(model))
    return "graphs", graphed.encode, graphed.graph_count


def main(argv: list[str] | None = None) -> None:
    from services.embedding.model import DEFAULT_MODEL_ID, encode_batch, load_sentence_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0", help="cuda[:N] (graphs) or cpu (ONNX Runtime)")
    parser.add_argument("--texts", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--passes", type=int, default=200, help="passes per cell")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embedding_passes.json"))
    args = parser.parse_args(argv)

    model = load_sentence_model(DEFAULT_MODEL_ID, args.device)
    started = time.perf_counter()
    fast, fast_encode, graph_count = _fast_encoder(model, args.device, max(args.texts))
    capture_s = time.perf_counter() - started
    rng, seen = random.Random(0), set[str]()
    cells: list[dict[str, Any]] = []
    for count in args.texts:
        batches = [sentences(count, rng, seen) for _ in range(args.passes)]
        eager, other = encode_batch(model, batches[0]), fast_encode(batches[0])
        cosine = min(cosines(eager, other))
        runs: dict[str, list[dict[str, float]]] = {"eager": [], fast: []}
        for _ in range(2):  # alternated, so neither side alone meets a slow moment of the host
            runs["eager"].append(_per_pass(lambda batch: encode_batch(model, batch), batches))
            runs[fast].append(_per_pass(fast_encode, batches))
        cell: dict[str, Any] = {"texts": count, "min_cosine": round(cosine, 6)}
        cell["max_abs_difference"] = float(np.abs(eager - other).max())
        cell |= {side: min(both, key=lambda run: run["wall_ms"]) for side, both in runs.items()}
        cell["cpu_ratio"] = round(cell["eager"]["cpu_ms"] / cell[fast]["cpu_ms"], 2)
        cell["wall_ratio"] = round(cell["eager"]["wall_ms"] / cell[fast]["wall_ms"], 2)
        cells.append(cell)
        print(cell, flush=True)
    result = {
        **run_metadata("embedding_passes", ["torch", "sentence-transformers", "transformers", "onnxruntime"]),
        "argv": command_line("embedding_passes", argv),
        "against_eager": fast,
        "graphs": graph_count,
        "capture_s": round(capture_s, 2),  # the graphs' capture, or the ONNX export and check
        "cells": cells,
    }
    path = write_result(args.out.stem, result, args.out.parent)
    save_bar_panels(path.with_suffix(".png"), [
        BarPanel(f"{kind} ms per pass ({args.device})", "ms", {
            f"{cell['texts']} {side}": cell[side][f"{kind}_ms"] for cell in cells for side in ("eager", fast)
        }, log_scale=True)
        for kind in ("wall", "cpu")
    ], suptitle=f"MiniLM forward pass: eager torch vs {fast}" + (f" ({graph_count} graphs)" if graph_count else ""))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
