"""The whole Bento on a 1-GPU machine with the embedding model on the GPU too.

``INFSTACK_EMBEDDING__DEVICE=cuda`` claims a GPU of its own from BentoML's allocator, which on one GPU
hands the second claim index 1 (it does not exist): the server must stop at once with the reason, not
restart a crashing worker forever (what the H200 run of 2026-11-30 showed). ``cuda:0`` shares the GPU.

Run on the GPU machine only (marked `gpu`, deselected in CI):
    python3 -m pytest tests/gpu -m gpu -p no:cacheprovider
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from scripts.procs import BentoServer, free_port
from services.embedding.cuda_graphs import buckets
from tests.conftest import GATEWAY_TARGET, gateway_env

pytestmark = pytest.mark.gpu


def _env(session_dir: Path, classic_models: dict, device: str) -> dict[str, str]:
    from models.write_arch_config import write_arch_config

    model_dir = write_arch_config("llama-3.2-1b", session_dir / "llama-1b-shape")
    return gateway_env(
        session_dir / f"share-{device}", classic_models,
        INFSTACK_LLM__MODEL=str(model_dir), INFSTACK_LLM__LOAD_FORMAT="dummy",
        INFSTACK_LLM__MAX_MODEL_LEN="2048", INFSTACK_LLM__GPU_MEMORY_UTILIZATION="0.5",
        INFSTACK_LLM__ENGINE_PORT=str(free_port()), INFSTACK_EMBEDDING__DEVICE=device,
    )  # fmt: skip


def test_a_second_gpu_claim_on_one_gpu_stops_the_server_with_the_reason(
    session_dir: Path, classic_models: dict
) -> None:
    import torch

    if torch.cuda.device_count() != 1:
        pytest.skip("the over-claim needs exactly one GPU")
    server = BentoServer(GATEWAY_TARGET, _env(session_dir, classic_models, "cuda"), session_dir / "claim.log")
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        server.start(ready_timeout_s=300)
    assert time.monotonic() - started < 240  # stopped, not restarted until the timeout
    log = server.log_path.read_text(errors="replace")
    assert "GPU 1, but this machine has 1 GPU(s)" in log and "INFSTACK_EMBEDDING__DEVICE=cuda:0" in log


def test_cuda_0_shares_the_gpu_with_the_llm(session_dir: Path, classic_models: dict) -> None:
    env = _env(session_dir, classic_models, "cuda:0")
    server = BentoServer(GATEWAY_TARGET, env, session_dir / "share.log")
    server.start(ready_timeout_s=600)
    try:
        answer = httpx.post(f"{server.url}/v1/embeddings", json={"input": ["on the GPU"]}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["data"][0]["embedding"]) == 384
        status = httpx.get(f"{server.url}/status", timeout=30).json()
        texts_buckets = len(buckets(int(env["INFSTACK_EMBEDDING__MAX_BATCH_SIZE"])))  # 1, 2, 4, 8 here
        assert status["embeddings"]["cuda_graphs"] == texts_buckets * 5  # x tokens 16..256 (MiniLM)
        assert status["embeddings"]["runtime"] == "torch"  # ONNX Runtime is the cpu default only
        completion = httpx.post(f"{server.url}/v1/completions", timeout=120,
                                json={"prompt": "a b", "max_tokens": 4, "temperature": 0, "ignore_eos": True})  # fmt: skip
        assert completion.status_code == 200, completion.text
    finally:
        server.stop()
