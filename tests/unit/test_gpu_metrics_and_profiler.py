"""GPU gauges are absent (not zero, not an error) without a GPU; the profiler is opt-in and its trace is
summarized by kernel."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.profile_trace import markdown, top_kernels
from services.gpu_metrics import NvmlCollector, _nvml, gpu_exposition
from services.llm.engine import engine_args
from services.settings import LLMSettings


def test_without_nvidia_driver_there_are_no_gpu_series_at_all() -> None:
    assert _nvml() is None  # this machine has no NVIDIA driver
    assert gpu_exposition(None) == "" and gpu_exposition([0]) == ""
    assert list(NvmlCollector(None).collect()) == []


def test_the_profiler_is_off_unless_a_trace_directory_is_set(tmp_path: Path) -> None:
    assert "--profiler-config" not in engine_args(LLMSettings(model="m"), "/m")
    args = engine_args(LLMSettings(model="m", profiler_dir=tmp_path), "/m")
    config = json.loads(args[args.index("--profiler-config") + 1])
    assert config == {"profiler": "torch", "torch_profiler_dir": str(tmp_path.resolve())}


def test_top_kernels_sums_gpu_kernels_by_name(tmp_path: Path) -> None:
    events = [
        {"ph": "X", "cat": "kernel", "name": "gemm", "dur": 300.0},
        {"ph": "X", "cat": "kernel", "name": "gemm", "dur": 100.0},
        {"ph": "X", "cat": "kernel", "name": "flash_attn", "dur": 100.0},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "dur": 9999.0},  # not a kernel: left out
    ]
    trace = tmp_path / "rank0.pt.trace.json.gz"
    with gzip.open(trace, "wt") as handle:
        json.dump({"traceEvents": events}, handle)
    table = top_kernels(trace, top=5)
    assert table["category"] == "kernel" and table["total_ms"] == 0.5
    assert [(r["name"], r["calls"], r["share"]) for r in table["top"]] == [
        ("gemm", 2, 0.8),
        ("flash_attn", 1, 0.2),
    ]
    assert "| `gemm` | 2 | 0.4 | 80.0% |" in markdown(table)


def test_gpu_gauge_names_parse_as_gauges() -> None:
    from services.metrics import GPU_GAUGES, GPU_LABELS

    text = "".join(
        f'# HELP {n} {d}\n# TYPE {n} gauge\n{n}{{gpu="0",name="X"}} 1.0\n' for n, d in GPU_GAUGES.items()
    )
    families = list(text_string_to_metric_families(text))
    assert [f.type for f in families] == ["gauge"] * len(GPU_GAUGES)
    assert all(set(s.labels) == set(GPU_LABELS) for f in families for s in f.samples)
