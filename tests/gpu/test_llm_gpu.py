"""The LLM service on a GPU: vLLM 0.26, a Llama-3.1-8B-shaped model with dummy weights.

Run on the GPU machine only (marked `gpu`, deselected in CI):
    python3 -m pytest tests/gpu -m gpu -p no:cacheprovider
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from scripts.procs import BentoServer, free_port, metric_value
from tests.conftest import LLM_TARGET

pytestmark = pytest.mark.gpu
MODEL = "llama-8b-shape"


@pytest.fixture(scope="module")
def gpu_llm(bento_factory: Callable[..., BentoServer], session_dir: Path) -> BentoServer:
    from models.write_arch_config import write_arch_config

    model_dir = session_dir / MODEL
    write_arch_config("llama-3.1-8b", model_dir)
    env = {
        "INFSTACK_LLM__MODEL": str(model_dir),
        "INFSTACK_LLM__SERVED_MODEL_NAME": MODEL,
        "INFSTACK_LLM__LOAD_FORMAT": "dummy",
        "INFSTACK_LLM__MAX_MODEL_LEN": "4096",
        "INFSTACK_LLM__KV_CACHE_DTYPE": "fp8",
        "INFSTACK_LLM__ENGINE_PORT": str(free_port()),
        "INFSTACK_CACHE__DISK_PATH": str(session_dir / "gpu-cache.sqlite3"),
    }
    return bento_factory(LLM_TARGET, env, "llm-gpu", run=False).start(ready_timeout_s=600)


def test_openai_routes_and_cache_on_gpu(gpu_llm: BentoServer) -> None:
    client = openai.OpenAI(base_url=f"{gpu_llm.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == [MODEL]
    first = client.completions.create(
        model=MODEL, prompt="GPU test", max_tokens=16, temperature=0, extra_body={"ignore_eos": True}
    )
    assert first.usage is not None and first.usage.completion_tokens == 16
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=0,
        stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    payload = {"model": MODEL, "prompt": "cache on gpu", "max_tokens": 4, "temperature": 0}
    replies = [httpx.post(f"{gpu_llm.url}/v1/completions", json=payload, timeout=60) for _ in range(2)]
    assert [r.headers["x-infstack-cache"] for r in replies] == ["miss", "hit"]
    metrics = httpx.get(f"{gpu_llm.url}/metrics").text
    assert (metric_value(metrics, "vllm:generation_tokens_total") or 0) >= 24
