"""Every Prometheus series the project adds, declared once, with units in the names.

BentoML serves these on each service's ``/metrics`` (it collects prometheus_client's registry,
in multiprocess mode across workers). docs/METRICS.md lists the same names, and an integration
test scrapes a served Bento for each of them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_MODEL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# --- cache layer (every cache: embeddings, LLM responses) -------------------------------------
CACHE_LOOKUPS = Counter(
    "infstack_cache_lookups_total", "Cache lookups by result (hit, miss, corrupt)", ["cache", "result"]
)
CACHE_LOOKUP_SECONDS = Histogram(
    "infstack_cache_lookup_seconds",
    "Latency of one batch lookup in the store",
    ["cache"],
    buckets=_FAST_BUCKETS,
)
CACHE_BACKEND_UP = Gauge(
    "infstack_cache_backend_up",
    "1 while the cache backend answers, 0 while serving without it",
    ["cache", "backend"],
    multiprocess_mode="mostrecent",
)
CACHE_BACKEND_ERRORS = Counter(
    "infstack_cache_backend_errors_total",
    "Failed cache backend calls (served without the cache)",
    ["cache", "backend", "op"],
)
CACHE_WRITES_DROPPED = Counter(
    "infstack_cache_writes_dropped_total",
    "Cache writes dropped because the write-behind queue was full",
    ["cache"],
)

# --- the relay to the engine -------------------------------------------------------------------
PROXY_OVERHEAD_SECONDS = Histogram(
    "infstack_proxy_overhead_seconds",
    "Time this layer added before the first byte of an answer from the engine: from the request's arrival "
    "to its sending to vLLM, plus from vLLM's first byte to ours (the engine's own TTFT excluded)",
    ["hop"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
)

LLM_COALESCED = Counter(
    "infstack_llm_coalesced_requests_total",
    "Deterministic requests answered by an identical request's generation already in flight: followed in "
    "this process (in_flight), or waited for while another process generated it (stored)",
    ["source"],
)

LLM_ROUTED = Counter(
    "infstack_llm_routed_requests_total",
    "Generations sent to each data-parallel engine replica, by decision: affinity (the prefix's first "
    "replica), spill (its first was over the load bound), round-robin",
    ["replica", "decision"],
)

# --- GPUs ----------------------------------------------------------------------------------------
# Read from NVML at scrape time by services/gpu_metrics.py, for the GPUs the serving process holds;
# absent (no series at all) where there is no GPU or no NVIDIA driver.
GPU_LABELS = ("gpu", "name")
GPU_GAUGES = {
    "infstack_gpu_utilization_ratio": "Share of the last sample period in which a kernel ran on the GPU (0-1)",
    "infstack_gpu_memory_used_bytes": "GPU memory in use, all processes",
    "infstack_gpu_memory_total_bytes": "GPU memory in total",
    "infstack_gpu_temperature_celsius": "GPU core temperature",
    "infstack_gpu_power_watts": "GPU power draw",
}

# --- embedding service -------------------------------------------------------------------------
EMBEDDING_BATCH_SIZE = Histogram(
    "infstack_embedding_batch_size",
    "Texts per model call after adaptive batching",
    buckets=_BATCH_BUCKETS,
)
EMBEDDING_MODEL_SECONDS = Histogram(
    "infstack_embedding_model_seconds", "Latency of one batched model call", buckets=_MODEL_BUCKETS
)
EMBEDDING_OVERLOADED = Counter(
    "infstack_embedding_overloaded_total",
    "Embedding requests refused (503) because the batcher could not encode their misses within max_latency_ms",
)
EMBEDDING_TEXTS = Counter("infstack_embedding_texts_total", "Texts embedded, by source", ["source"])

# --- classic-ML service --------------------------------------------------------------------------
# ``model`` is "text" or "tabular". A text batch's seconds include its call to the embedding service.
CLASSIC_BATCH_SIZE = Histogram(
    "infstack_classic_batch_size",
    "Rows (texts or feature rows) per model call after adaptive batching",
    ["model"],
    buckets=_BATCH_BUCKETS,
)
CLASSIC_BATCH_SECONDS = Histogram(
    "infstack_classic_batch_seconds",
    "Latency of one batched model call",
    ["model"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CLASSIC_ROWS = Counter("infstack_classic_rows_total", "Rows predicted", ["model"])
CLASSIC_OVERLOADED = Counter(
    "infstack_classic_overloaded_total", "Requests refused with 503 by the batching bound", ["model"]
)
CLASSIC_EMBEDDING_TEXTS = Counter(
    "infstack_classic_embedding_texts_total",
    "Texts the classifier got embeddings for, by source as the embedding service reported (cache, model)",
    ["source"],
)
