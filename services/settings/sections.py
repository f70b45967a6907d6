"""The sections of the other services and of every process: cache store, classic ML, gateway, worker
processes (the embedding service's is in ``embedding.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, create_model, field_validator

from services.settings.section import Section

GPU_HOST_CLASSIC_WORKERS = 2


class CacheSettings(Section):
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


class ClassicBase(Section):
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
    gather_turns: int = Field(
        default=8,
        ge=0,
        description="A batch about to start waits up to this many event-loop turns while requests of its model "
        "keep reaching the dispatcher, and takes them along: BentoML starts a batch as soon as one request is "
        "queued, so a busy worker's batches stayed at ~3 requests. The wait ends at the first turn in which none "
        "arrived, and a batch of one request that follows another (a lone client's) starts at once. 0: off. "
        "Measured against 0 in one run each: H100 host, tabular c=8 / 64 +50% / +43% (batches 3.4 -> 14.9 at "
        "c=64), text c=8 +61%, c=64 -6% (classic_ab_gpu_h100_dec06_gather.json); 2-core CPU, tabular c=8 +24%, "
        "text c=8 +17%, c=1 and c=64 within 3% (classic_gather_cpu_dec06.json).",
    )
    learn_wait_from_batches: bool = Field(
        default=True,
        description="BentoML's dispatcher learns how long to hold a request for batch-mates from the waits of "
        "past batches, queueing behind a running batch included: after a load peak it held every lone request "
        "~10-20 ms, and kept doing so (2-core CPU, c=1 after c=64: tabular p50 1.7 -> 17-24 ms, text 25 -> "
        "165-179 ms). True: a batch of one counts as having waited 0, so the hold fades within a second of "
        "low load. False: BentoML's own estimate (benchmarks: its A/B).",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description="BentoML worker processes of this service; None: 2 where the embedding model runs on a GPU "
        "(a GPU host has the cores: on an H200 host, 16 cores, 2 workers and text batches_in_flight 2 beat "
        "1 and 1 in every cell, benchmarks/results/classic_vs_litserve_gpu_h200_in_flight.json), else 1.",
    )
    max_concurrency: int = Field(default=512, ge=1, description="In-flight requests before 503.")
    timeout_s: int = Field(
        default=30, ge=1, description="Request timeout of this BentoML service, in seconds."
    )
    gpus: int = Field(
        default=0,
        ge=0,
        description="GPUs for this service; models that can use one (torch models) run on it.",
    )

    def worker_count(self, embedding_on_gpu: bool) -> int:
        """``workers`` as set, or its default for where the embedding model runs."""
        if self.workers is not None:
            return self.workers
        return GPU_HOST_CLASSIC_WORKERS if embedding_on_gpu else 1

    def batches_in_flight_for(self, kind: str, waits_on_embeddings: bool, embedding_on_gpu: bool) -> int:
        """``<kind>_batches_in_flight`` as set, or its default: 2 for a model whose batches wait on the
        embedding model on a GPU (the next batch overlaps that wait), else 1 (BentoML's own limit; text at
        2 was slower at concurrency 8 in a smoke run on the 2-core CPU, where the wait is CPU work)."""
        value: int | None = getattr(self, f"{kind}_batches_in_flight")
        if value is not None:
            return value
        return 2 if waits_on_embeddings and embedding_on_gpu else 1


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
        fields[spec.setting("batches_in_flight")] = (int | None, Field(
            default=None, ge=1, le=8, description="Batches the dispatcher may run at once (BentoML's own limit is 1): "
            "more lets a batch that waits on another service overlap the next one. None: 2 for a model that "
            "waits on the embedding model when that runs on a GPU, else 1."
        ))  # fmt: skip
    return create_model("ClassicSettings", __base__=ClassicBase, __doc__=ClassicBase.__doc__, **fields)


if TYPE_CHECKING:  # the checker sees the service's own fields; each model reads its own by name
    ClassicSettings = ClassicBase
else:
    ClassicSettings = _classic_settings()


class GatewaySettings(Section):
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


class ProcessSettings(Section):
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
