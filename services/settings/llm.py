"""The LLM service's section: every vLLM engine knob, the proxy's caches and the service's limits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from services.settings.section import Section

KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16")


class LLMSettings(Section):
    """The vLLM engine behind the LLM service. Every engine knob is here; none is implicit."""

    model: str = Field(
        default="tiny-llm",
        description="A local model directory, a BentoML model-store tag, or a Hugging Face id. "
        "The default is the tiny test model built by `python -m models.build_tiny_llm`.",
    )
    served_model_name: str | None = Field(default=None, description="Name in /v1/models; default: model.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto",
        description="Weights/activations dtype; auto follows the model config (bf16 on CPU builds).",
    )
    quantization: Literal["awq", "gptq", "fp8", "compressed-tensors"] | None = Field(
        default=None,
        description="Weight quantization the checkpoint uses (awq, gptq, fp8, compressed-tensors); fp8 also quantizes bf16 weights online.",
    )
    kv_cache_dtype: str = Field(default="auto", description=f"One of {', '.join(KV_CACHE_DTYPES)}.")
    load_format: Literal["auto", "safetensors", "pt", "dummy"] = Field(
        default="auto",
        description="dummy: random weights of the real architecture (benchmarks without weights).",
    )
    enable_prefix_caching: bool = Field(
        default=True, description="Reuse KV blocks of shared prompt prefixes (vLLM automatic prefix caching)."
    )
    gpu_memory_utilization: float = Field(
        default=0.90,
        gt=0,
        le=1,
        description="Share of GPU memory vLLM may take for weights + KV cache (GPU builds).",
    )
    max_num_seqs: int = Field(default=256, ge=1, description="Explicit: embedded vLLM can default lower.")
    max_num_batched_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per scheduler step (chunked prefill budget); None: vLLM's default.",
    )
    max_model_len: int | None = Field(
        default=None, ge=16, description="Longest prompt + output; None: the model's own limit."
    )
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one model layer is split over.")
    pipeline_parallel_size: int = Field(
        default=1, ge=1, description="GPUs the layers are spread over (stages)."
    )
    data_parallel_size: int = Field(
        default=1,
        ge=1,
        description="Engine replicas, each a whole vLLM server on its own tensor x pipeline GPUs and loopback "
        "port (engine_port + i); the proxy routes each generation to one of them (routing).",
    )
    routing: Literal["prefix-affinity", "round-robin"] = Field(
        default="prefix-affinity",
        description="Across data-parallel replicas: prefix-affinity sends prompts that start alike to the replica "
        "that has their prefix cached (bounded by affinity_load_factor); round-robin takes turns.",
    )
    affinity_prefix_chars: int = Field(
        default=1024,
        ge=16,
        description="Characters of the prompt (token ids count 4 each) that pick its replica: long enough for "
        "a system prompt to decide, short enough that what follows it does not.",
    )
    affinity_load_factor: float = Field(
        default=1.25,
        ge=1,
        description="A replica takes a prompt of its prefix while its requests in flight stay under this times "
        "the mean; past it the prompt goes to the next replica in the prefix's order (bounded-load hashing).",
    )
    enforce_eager: bool = Field(
        default=False, description="No CUDA graphs / torch.compile: faster start, slower decode."
    )
    seed: int = Field(default=0, description="Engine seed (per-request seeds override it).")
    cpu_kvcache_space_gib: int = Field(default=2, ge=1, description="KV cache size on CPU builds of vLLM.")
    cpu_int4_w4a8: bool = Field(
        default=False,
        description="CPU builds on AMX CPUs: run W4A16 (GPTQ/AWQ) checkpoints with int8 activations "
        "(vLLM's VLLM_CPU_INT4_W4A8). Off: activations stay 16-bit, as the checkpoint declares.",
    )
    engine_port: int = Field(default=8000, ge=1, le=65535, description="Loopback port of the vLLM process.")
    engine_start_timeout_s: int = Field(
        default=900, ge=10, description="How long benchmark and test harnesses wait for the engine to answer."
    )
    extra_engine_args: list[str] = Field(default_factory=list, description="Passed to vLLM verbatim.")
    drain_timeout_s: int = Field(
        default=25,
        ge=0,
        le=29,
        description="On stop, how long the engine finishes the requests it has before it exits (BentoML kills "
        "it 30 s after asking); 0: abort them.",
    )
    profiler_dir: Path | None = Field(
        default=None,
        description="Turn on vLLM's torch profiler, writing traces here (POST /start_profile and /stop_profile, "
        "or `python -m benchmarks.profile_trace`). Off by default: a profiled engine is slower.",
    )
    request_gpus: bool = Field(
        default=True,
        description="Ask BentoML/BentoCloud for tensor x pipeline x data parallel GPUs. The Bento targets GPUs, so "
        "this holds even when the Bento is built on a CPU machine; turn off for CPU-only deployments.",
    )
    workers: int | None = Field(
        default=None, ge=1, description="BentoML proxy workers; None: BentoML's default."
    )
    timeout_s: int = Field(
        default=600, ge=1, description="Request timeout of this BentoML service, in seconds."
    )
    max_concurrency: int = Field(
        default=2048, ge=1, description="In-flight requests before BentoML answers 503."
    )
    response_cache: bool = Field(
        default=True, description="Cache deterministic (temperature 0 or seeded) answers."
    )
    coalesce_across_processes: bool | None = Field(
        default=None,
        description="Identical deterministic requests in flight in different processes (workers, or replicas "
        "sharing Redis) are generated once: the first claims the key in the cache store, the others wait for "
        "its answer there. None: on when more than one process shares the cache (workers > 1, or Redis).",
    )
    max_generate_tokens: int = Field(default=4096, ge=1, description="Upper bound of the typed generate API.")
    semantic_cache: bool = Field(
        default=False,
        description="Also answer near-identical prompts from the cache (needs the embedding service).",
    )
    semantic_threshold: float = Field(
        default=0.95, gt=0, le=1, description="Cosine similarity for a semantic hit."
    )
    semantic_max_entries: int = Field(
        default=10_000, ge=1, description="Prompts remembered per parameter set."
    )

    @field_validator("kv_cache_dtype")
    @classmethod
    def _known_kv_cache_dtype(cls, value: str) -> str:
        if value not in KV_CACHE_DTYPES:
            hint = " (8-bit KV cache in vLLM is fp8)" if "int8" in value else ""
            raise ValueError(f"kv_cache_dtype {value!r} is not supported{hint}; use one of {KV_CACHE_DTYPES}")
        return value

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def gpus(self) -> int:
        return self.gpus_per_replica * self.data_parallel_size

    @property
    def engine_ports(self) -> list[int]:
        """The loopback port of each engine replica."""
        return [self.engine_port + i for i in range(self.data_parallel_size)]
