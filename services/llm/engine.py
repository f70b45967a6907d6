"""From settings to the vLLM engine process: model resolution and the exact command line.

Pure functions (no process started here), so the mapping of every knob is unit-tested.
"""

from __future__ import annotations

import sys
from pathlib import Path

from services.llm import compat
from services.settings import LLMSettings


def store_tag(model: str) -> str | None:
    """``model`` when it names a model in the BentoML store (so the Bento must carry it), else None."""
    if Path(model).expanduser().is_dir():
        return None
    try:
        import bentoml

        bentoml.models.get(model)
    except Exception:  # not in the store (bentoml raises NotFound, or a bad tag format)
        return None
    return model


def resolve_model(model: str) -> str:
    """A local directory as is; else a BentoML model-store tag (``name`` or ``name:version``);
    else the string itself (a Hugging Face id, for machines that reach the Hub)."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve())
    try:
        import bentoml

        return bentoml.models.get(model).path
    except Exception:  # not in the store (bentoml raises NotFound, or a bad tag format)
        return model


def served_model_name(settings: LLMSettings) -> str:
    return settings.served_model_name or settings.model


def engine_args(settings: LLMSettings, model_path: str, port: int | None = None) -> list[str]:
    """vLLM CLI arguments (of one replica: ``port``, default ``engine_port``). Scheduler limits are always
    explicit: vLLM picks its own defaults by context (embedded vs ``vllm serve``, GPU type), and we want
    the same engine everywhere."""
    args = [
        "--model", model_path,
        "--served-model-name", served_model_name(settings),
        "--host", "127.0.0.1",  # the proxy is the only way in
        "--port", str(settings.engine_port if port is None else port),
        "--dtype", settings.dtype,
        "--kv-cache-dtype", settings.kv_cache_dtype,
        "--load-format", settings.load_format,
        "--max-num-seqs", str(settings.max_num_seqs),
        "--tensor-parallel-size", str(settings.tensor_parallel_size),
        "--pipeline-parallel-size", str(settings.pipeline_parallel_size),
        "--seed", str(settings.seed),
        "--enable-prefix-caching" if settings.enable_prefix_caching else "--no-enable-prefix-caching",
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if not compat.is_cpu_build():
        args += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
    if settings.quantization:
        args += ["--quantization", settings.quantization]
    if settings.max_num_batched_tokens:
        args += ["--max-num-batched-tokens", str(settings.max_num_batched_tokens)]
    if settings.max_model_len:
        args += ["--max-model-len", str(settings.max_model_len)]
    if settings.enforce_eager:
        args.append("--enforce-eager")
    args += compat.drain_args(settings.drain_timeout_s)
    if settings.profiler_dir is not None:
        args += compat.profiler_args(settings.profiler_dir.expanduser().resolve())
    return args + list(settings.extra_engine_args)


def replica_gpus(settings: LLMSettings, visible: list[int] | None) -> list[list[int] | None]:
    """The GPUs of each data-parallel replica: consecutive slices of what BentoML assigned (``visible``,
    from ``CUDA_VISIBLE_DEVICES``; None: every GPU, counted from 0). None for a replica on a CPU build."""
    if compat.is_cpu_build():
        return [None] * settings.data_parallel_size
    per = settings.gpus_per_replica
    pool = visible if visible is not None else list(range(settings.gpus))
    if len(pool) < settings.gpus:
        raise ValueError(
            f"{settings.data_parallel_size} replicas x {per} GPUs need {settings.gpus} GPUs; {len(pool)} assigned"
        )
    return [pool[i * per : (i + 1) * per] for i in range(settings.data_parallel_size)]


def replica_commands(
    settings: LLMSettings, visible: list[int] | None
) -> list[tuple[list[str], dict[str, str]]]:
    """(vLLM server command, extra environment) of each replica, for services/llm/replicas.py."""
    model_path = resolve_model(settings.model)
    out = []
    for port, gpus in zip(settings.engine_ports, replica_gpus(settings, visible), strict=True):
        env = {} if gpus is None else {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
        out.append(([*compat.api_server_command(), *engine_args(settings, model_path, port)], env))
    return out


def engine_command(settings: LLMSettings) -> list[str]:
    """The full command: ``env`` sets the engine's own variables without touching ours. Several
    data-parallel replicas run under services/llm/replicas.py, which starts one server per replica.

    ``setsid``: the engine leads a process group of its own (its engine-core and worker processes join it),
    so the whole engine can be stopped even after its API server died: vLLM's engine core outlives a
    killed API server (reparented, holding its memory, on a GPU its GPU memory). PROMETHEUS_MULTIPROC_DIR
    is removed: BentoML sets it for its workers, and an engine inheriting it would write its series into
    BentoML's directory (duplicating what ``__metrics__`` appends).
    """
    profiler_dir = settings.profiler_dir.expanduser().resolve() if settings.profiler_dir else None
    engine_env = compat.engine_env(
        settings.cpu_kvcache_space_gib, profiler_dir, cpu_int4_w4a8=settings.cpu_int4_w4a8
    )
    env = [f"{k}={v}" for k, v in engine_env.items()]
    if settings.data_parallel_size > 1:
        server = [sys.executable, "-m", "services.llm.replicas"]
    else:
        server = [*compat.api_server_command(), *engine_args(settings, resolve_model(settings.model))]
    return ["setsid", "env", "-u", "PROMETHEUS_MULTIPROC_DIR", *env, *server]
