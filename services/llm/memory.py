"""GPU memory planner: will a model fit, how many tokens of KV cache are left, what to set.

The LLM service runs it before starting the engine (a model that cannot fit fails start-up with this
message); operators run it as

    python -m models.plan_memory --model DIR|TAG [--dtype auto] [--quantization fp8|awq|gptq]
        [--kv-cache-dtype auto|fp8] [--tensor-parallel-size 1] [--max-model-len N]
        [--gpu-memory-utilization 0.9] [--gpu h100|h200|MiB] [--max-num-seqs 256] [--json]

It follows vLLM's own accounting (v1 engine): of ``total x gpu_memory_utilization`` per GPU, the weights,
the peak activations of a profile run (``max_num_batched_tokens`` tokens through the largest layer, plus
the sampler's float32 logits for ``max_num_seqs`` sequences) and non-torch memory (CUDA context,
cuBLAS workspaces: ``NON_TORCH_GIB``) are taken; the rest is KV cache, in 16-token blocks. On CPU builds
the KV cache is ``VLLM_CPU_KVCACHE_SPACE`` GiB exactly. Checked against what vLLM reports
(docs/OPERATIONS.md): an 8B Llama in bf16 on an H200 at 0.9, 896,912 tokens reported.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3
GPUS_MIB = {"h100": 81_559, "h200": 143_771}  # what NVML reports as total memory
BLOCK_TOKENS = 16
NON_TORCH_GIB = 1.0  # vLLM measured 0.8 GiB beyond weights and activations on an H200 (vLLM 0.26)
DEFAULT_BATCHED_TOKENS = 8192  # vLLM's max_num_batched_tokens for an OpenAI server on 80 GB+ GPUs
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
# Bytes per parameter of the quantized linear layers (embeddings and lm_head stay 16-bit): 4-bit
# weights plus one fp16 scale and a 4-bit zero point per group of 128.
QUANTIZED_BYTES = {"fp8": 1.0, "awq": 0.5 + 2.5 / 128, "gptq": 0.5 + 2.5 / 128}


class DoesNotFit(ValueError):
    """The model cannot be served with these settings; the message says by how much and what helps."""


@dataclass(frozen=True)
class Architecture:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    dtype: str
    max_position: int
    quantization: str | None  # of a pre-quantized checkpoint (its config says so)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Architecture:
        text = config.get("text_config", config)
        if "num_hidden_layers" not in text or "hidden_size" not in text:
            raise ValueError("not a decoder config: no num_hidden_layers / hidden_size")
        heads = int(text["num_attention_heads"])
        quant = (config.get("quantization_config") or {}).get("quant_method")
        return cls(
            hidden=int(text["hidden_size"]),
            layers=int(text["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=int(text.get("head_dim") or text["hidden_size"] // heads),
            intermediate=int(text["intermediate_size"]),
            vocab=int(text["vocab_size"]),
            tied_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
            dtype=str(
                text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype") or "bfloat16"
            ),
            max_position=int(text.get("max_position_embeddings") or 4096),
            quantization=str(quant) if quant else None,
        )

    @property
    def linear_params(self) -> int:
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)  # q, o; k, v
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    @property
    def embedding_params(self) -> int:
        """Input embeddings, the LM head (unless tied), norms."""
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return embeddings + (2 * self.layers + 1) * self.hidden


@dataclass(frozen=True)
class Plan:
    weights_bytes: int  # per GPU
    kv_bytes_per_token: int  # per GPU
    kv_bytes_per_sequence: int  # one max_model_len sequence, per GPU
    activation_bytes: int
    non_torch_bytes: int
    usable_bytes: int  # total x gpu_memory_utilization, per GPU (CPU: the KV space)
    kv_cache_bytes: int
    kv_cache_tokens: int
    max_model_len: int
    max_concurrent_sequences: float  # of max_model_len tokens each
    recommended_max_num_seqs: int
    recommended_max_model_len: int
    device: str


def resolve_dtype(dtype: str, arch: Architecture) -> str:
    """vLLM's ``auto``: the checkpoint's dtype, except that float32 checkpoints are served in bf16."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if arch.dtype in ("float32", "bfloat16") else arch.dtype


def weight_bytes(arch: Architecture, dtype: str, quantization: str | None, tensor_parallel: int) -> int:
    scheme = quantization or arch.quantization
    if scheme in ("compressed-tensors", None) and arch.quantization == "compressed-tensors":
        scheme = "awq"  # the W4A16 schemes this project produces; FP8 checkpoints say fp8
    linear = QUANTIZED_BYTES.get(scheme or "", _DTYPE_BYTES[dtype])
    total = arch.linear_params * linear + arch.embedding_params * _DTYPE_BYTES[dtype]
    return math.ceil(total / tensor_parallel)


def kv_bytes_per_token(arch: Architecture, kv_dtype: str, tensor_parallel: int) -> int:
    kv_heads = max(1, arch.kv_heads // tensor_parallel)  # fewer KV heads than GPUs: replicated
    return 2 * arch.layers * kv_heads * arch.head_dim * _DTYPE_BYTES[kv_dtype]


def activation_bytes(arch: Architecture, dtype: str, batched_tokens: int, max_num_seqs: int, tp: int) -> int:
    """The profile run's peak: residual, normed input, q/k/v and the MLP's gate, up and product for
    ``batched_tokens`` tokens, plus float32 logits and probabilities for ``max_num_seqs`` rows."""
    per_token = (
        2 * arch.hidden + arch.head_dim * (arch.heads + 2 * arch.kv_heads) // tp + 3 * arch.intermediate // tp
    )
    return batched_tokens * per_token * _DTYPE_BYTES[dtype] + 2 * max_num_seqs * arch.vocab * 4


def plan(
    arch: Architecture,
    *,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    gpu_mib: int | None = GPUS_MIB["h200"],
    cpu_kv_space_gib: float | None = None,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int | None = None,
) -> Plan:
    """The memory plan (of the busiest GPU); raises DoesNotFit when not even one full-length sequence
    fits. Pipeline stages hold a share of the layers each, so weights and KV per token divide by them."""
    model_dtype = resolve_dtype(dtype, arch)
    kv_dtype = model_dtype if kv_cache_dtype == "auto" else kv_cache_dtype
    length = max_model_len or arch.max_position
    stages = pipeline_parallel_size
    per_token = math.ceil(kv_bytes_per_token(arch, kv_dtype, tensor_parallel_size) / stages)
    weights = math.ceil(weight_bytes(arch, model_dtype, quantization, tensor_parallel_size) / stages)
    if cpu_kv_space_gib is not None:  # vLLM's CPU backend: a fixed KV space, no profiling
        usable, activations, non_torch, device = int(cpu_kv_space_gib * GIB), 0, 0, "cpu"
        kv_bytes = usable
    else:
        assert gpu_mib is not None
        usable = int(gpu_mib * 1024**2 * gpu_memory_utilization)
        tokens = max_num_batched_tokens or max(DEFAULT_BATCHED_TOKENS, length)
        activations = activation_bytes(arch, model_dtype, tokens, max_num_seqs, tensor_parallel_size)
        non_torch, device = int(NON_TORCH_GIB * GIB), f"{gpu_mib} MiB GPU"
        kv_bytes = usable - weights - activations - non_torch
    kv_tokens = max(0, kv_bytes // (per_token * BLOCK_TOKENS) * BLOCK_TOKENS)
    if kv_tokens < length:
        short = length * per_token - kv_bytes
        raise DoesNotFit(
            f"does not fit: {length:,} tokens of KV cache needed for one sequence, {kv_tokens:,} left "
            f"(weights {weights / GIB:.1f} GiB per GPU of {usable / GIB:.1f} GiB usable; short by "
            f"{short / GIB:.2f} GiB). Options: --quantization fp8 (weights /2) or awq/gptq (/4), "
            f"--kv-cache-dtype fp8 (KV /2), --tensor-parallel-size {2 * tensor_parallel_size}, a smaller "
            f"--max-model-len, or a higher --gpu-memory-utilization"
        )
    typical = max(1, length // 4)
    return Plan(
        weights_bytes=weights,
        kv_bytes_per_token=per_token,
        kv_bytes_per_sequence=per_token * length,
        activation_bytes=activations,
        non_torch_bytes=non_torch,
        usable_bytes=usable,
        kv_cache_bytes=max(0, kv_bytes),
        kv_cache_tokens=kv_tokens,
        max_model_len=length,
        max_concurrent_sequences=round(kv_tokens / length, 2),
        recommended_max_num_seqs=max(1, min(1024, kv_tokens // typical)),
        recommended_max_model_len=min(arch.max_position, kv_tokens),
        device=device,
    )


def load_architecture(model: str) -> Architecture:
    """From a model directory or a BentoML model-store tag."""
    path = Path(model).expanduser()
    if not path.is_dir():
        import bentoml

        path = Path(bentoml.models.get(model).path)
    return Architecture.from_config(json.loads((path / "config.json").read_text()))
