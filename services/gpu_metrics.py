"""GPU gauges from NVML, for the service that holds the GPUs (the LLM service): utilization, memory,
temperature and power per GPU, labelled by index and name (names declared in services/metrics.py).

Read when ``/metrics`` is scraped, never on a request path. Without an NVIDIA driver or GPU (CI, CPU
deployments) NVML does not initialize and this returns no series at all, not zeros or an error.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from services.metrics import GPU_GAUGES, GPU_LABELS

log = logging.getLogger(__name__)


@functools.cache
def _nvml() -> object | None:
    """The initialized ``pynvml`` module, or None where NVML cannot run here."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            return None
        module: object = pynvml
        return module
    except Exception as exc:  # no driver library, no device, no package: simply no GPU series
        log.info("no GPU metrics: NVML is not available (%s)", exc)
        return None


class NvmlCollector:
    """Gauges for the GPUs at ``indices`` (NVML numbering; None: every GPU of the host)."""

    def __init__(self, indices: list[int] | None) -> None:
        self.indices = indices

    def collect(self) -> Iterator[Metric]:
        nvml = _nvml()
        if nvml is None:
            return
        families = {name: GaugeMetricFamily(name, doc, labels=GPU_LABELS) for name, doc in GPU_GAUGES.items()}
        for index in self.indices if self.indices is not None else range(nvml.nvmlDeviceGetCount()):  # type: ignore[attr-defined]
            handle = nvml.nvmlDeviceGetHandleByIndex(index)  # type: ignore[attr-defined]
            name = nvml.nvmlDeviceGetName(handle)  # type: ignore[attr-defined]
            labels = [str(index), name.decode() if isinstance(name, bytes) else str(name)]
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)  # type: ignore[attr-defined]
            values = {
                "infstack_gpu_utilization_ratio": nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0,  # type: ignore[attr-defined]
                "infstack_gpu_memory_used_bytes": float(memory.used),
                "infstack_gpu_memory_total_bytes": float(memory.total),
                "infstack_gpu_temperature_celsius": float(
                    nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)  # type: ignore[attr-defined]
                ),
                "infstack_gpu_power_watts": nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # type: ignore[attr-defined]
            }
            for family_name, value in values.items():
                families[family_name].add_metric(labels, value)
        yield from families.values()


def gpu_exposition(indices: list[int] | None) -> str:
    """The GPU gauges as exposition text; "" where there is no GPU."""
    if _nvml() is None:
        return ""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NvmlCollector(indices))
    return generate_latest(registry).decode()


def gpu_count() -> int | None:
    """GPUs on this machine; None without NVML."""
    nvml = _nvml()
    return None if nvml is None else int(nvml.nvmlDeviceGetCount())  # type: ignore[attr-defined]


def gpu_total_mib(indices: list[int] | None) -> int | None:
    """The smallest total memory, in MiB, of the GPUs at ``indices`` (None: all); None without NVML."""
    nvml = _nvml()
    if nvml is None:
        return None
    chosen = indices if indices is not None else list(range(nvml.nvmlDeviceGetCount()))  # type: ignore[attr-defined]
    totals = [nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(i)).total for i in chosen]  # type: ignore[attr-defined]
    return min(totals) // 2**20 if totals else None


def gpu_capability(indices: list[int] | None) -> tuple[int, int] | None:
    """The lowest CUDA compute capability of the GPUs at ``indices`` (None: all); None without NVML."""
    nvml = _nvml()
    if nvml is None:
        return None
    chosen = indices if indices is not None else list(range(nvml.nvmlDeviceGetCount()))  # type: ignore[attr-defined]
    found = [
        tuple(nvml.nvmlDeviceGetCudaComputeCapability(nvml.nvmlDeviceGetHandleByIndex(i)))  # type: ignore[attr-defined]
        for i in chosen
    ]
    return (int(min(found)[0]), int(min(found)[1])) if found else None
