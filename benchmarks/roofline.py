"""Batch-1 decode roofline: each decode step of one sequence reads every weight once, so its time per
output token cannot be below weight bytes / memory bandwidth. Both are measured here, in the run that
measures TPOT (``python -m benchmarks llm_serving --roofline``), on the same GPU."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from services.llm.memory import Architecture, resolve_dtype, weight_bytes
from services.settings import LLMSettings


def copy_bandwidth_bytes_per_s(size_mib: int = 2048, repeats: int = 20) -> float | None:
    """Device memory bandwidth as a device-to-device copy sees it (bytes read + bytes written per
    second, the best of ``repeats``); None without a CUDA device. Run it before an engine takes the GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    src = torch.empty(size_mib * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        dst.copy_(src)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * size_mib * 2**20 / best


def decode_floor(model_dir: Path, settings: LLMSettings, bandwidth: float) -> dict[str, Any]:
    """The weights one decode step reads (per GPU) and the TPOT floor they set at ``bandwidth``."""
    arch = Architecture.from_config(json.loads((model_dir / "config.json").read_text()))
    dtype = resolve_dtype(settings.dtype, arch)
    weights = weight_bytes(arch, dtype, settings.quantization, settings.tensor_parallel_size)
    return {
        "weights_bytes": weights,
        "copy_bandwidth_bytes_per_s": round(bandwidth),
        "tpot_floor_ms": round(weights / bandwidth * 1e3, 3),
    }


def versus_floor(floor: dict[str, Any], tpot_p50_ms: float) -> dict[str, Any]:
    return floor | {
        "tpot_p50_ms": round(tpot_p50_ms, 3),
        "tpot_over_floor": round(tpot_p50_ms / floor["tpot_floor_ms"], 3),
    }
