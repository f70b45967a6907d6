"""Quantize a Hugging Face checkpoint (W4A16 AWQ or GPTQ, FP8 dynamic) and register it in the model store.

    python -m models.quantize --model tiny-llm-trained --scheme w4a16-gptq --name tiny-llm-gptq
    python -m models.quantize --model /data/Llama-3.1-8B --scheme fp8-dynamic --name llama-8b-fp8
    INFSTACK_LLM__MODEL=tiny-llm-gptq make serve     # vLLM detects the scheme from config.json

Why this shape: the checks that need no ML library (the model is a causal-LM checkpoint, the scheme is
known, the calibration text exists and is not empty) run here in the main venv and fail in a second with
one line; the quantization itself runs in ``.venv-quant`` (models/quant_env.py says why) through
models/quant_worker.py, which prints llmcompressor's progress. The result goes into the BentoML model
store with its scheme, source model (tag and content hash), calibration set (file, sha256, blocks) and
the worker's summary in the metadata. Calibration default: the training part of the shipped docstring
corpus (models/corpus.py), never the held-out part the evaluation scores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from models.build_tiny_llm import log, register_in_bentoml
from models.corpus import DATA_PATH, is_held_out, load_texts
from models.quant_env import run_module

SCHEMES = ("w4a16-awq", "w4a16-gptq", "fp8-dynamic")
CALIBRATED = ("w4a16-awq", "w4a16-gptq")


class QuantizeRequestError(ValueError):
    """A request that cannot work, found before any model is loaded."""


def resolve(model: str) -> tuple[Path, str]:
    """(checkpoint directory, what to record as its source): a directory as is, else a model-store tag."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve(), str(path.resolve())
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        found = bentoml.models.get(model)
    except (BentoMLException, ValueError) as exc:
        raise QuantizeRequestError(
            f"--model {model!r}: no such directory, nor a BentoML model-store tag"
        ) from exc
    return Path(found.path), str(found.tag)


def check_architecture(model_dir: Path) -> str:
    """The checkpoint's architecture; a causal LM, or QuantizeRequestError naming what it is."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise QuantizeRequestError(f"{model_dir} has no config.json: not a Hugging Face checkpoint")
    config = json.loads(config_path.read_text())
    archs = config.get("architectures") or []
    if not archs or not archs[0].endswith("ForCausalLM"):
        raise QuantizeRequestError(
            f"{model_dir}: architecture {archs or config.get('model_type')} is not supported: the quantizer "
            "handles decoder-only text generation checkpoints (architectures ending in ForCausalLM)"
        )
    if config.get("quantization_config"):
        raise QuantizeRequestError(
            f"{model_dir} is already quantized ({config['quantization_config'].get('quant_method')})"
        )
    return str(archs[0])


def calibration_texts(scheme: str, calibration: Path | None) -> tuple[Path | None, list[str]]:
    """The calibration file and its texts; the shipped corpus minus held-out texts by default."""
    if scheme not in CALIBRATED:
        return None, []
    if calibration is None:
        return DATA_PATH, [t for t in load_texts(DATA_PATH) if not is_held_out(t)]
    if not calibration.is_file():
        raise QuantizeRequestError(f"--calibration {calibration}: no such file")
    try:
        texts = load_texts(calibration)
    except (ValueError, UnicodeDecodeError) as exc:
        raise QuantizeRequestError(f"--calibration {calibration}: {exc}") from exc
    if not texts:
        raise QuantizeRequestError(
            f"--calibration {calibration} holds no text: {scheme} needs calibration data"
        )
    return calibration, texts


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quantize(model: str, scheme: str, name: str, calibration: Path | None = None, samples: int = 32) -> str:
    """Quantize ``model`` (directory or tag) with ``scheme``; return the new model-store tag."""
    if scheme not in SCHEMES:
        raise QuantizeRequestError(f"--scheme {scheme!r}: one of {', '.join(SCHEMES)}")
    if samples < 1:
        raise QuantizeRequestError("--samples must be at least 1")
    src, source = resolve(model)
    architecture = check_architecture(src)
    calib_path, texts = calibration_texts(scheme, calibration)
    log(
        f"quantizing {source} ({architecture}) to {scheme}"
        + (f" on {len(texts)} texts of {calib_path}" if texts else "")
    )
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        out, report = Path(tmp) / name, Path(tmp) / "report.json"
        args = [
            "--model",
            str(src),
            "--out",
            str(out),
            "--scheme",
            scheme,
            "--samples",
            str(samples),
            "--report",
            str(report),
        ]
        if calib_path is not None:
            # the worker reads a file: write exactly the texts chosen here (default: held-out ones left out)
            chosen = Path(tmp) / "calibration.txt"
            chosen.write_text("\n".join(" ".join(t.split()) for t in texts) + "\n", encoding="utf-8")
            args += ["--calibration", str(chosen)]
        run_module("models.quant_worker", args)
        summary = json.loads(report.read_text())
        summary["quantization_config"] = json.dumps(
            summary["quantization_config"]
        )  # the store takes no nulls
        calib_name = str(calib_path.name if calib_path == DATA_PATH else calib_path) if calib_path else "none"
        metadata = {
            "scheme": scheme, "source_model": source, "source_architecture": architecture,
            "calibration_set": calib_name, "calibration_sha256": sha256(calib_path) if calib_path else "none",
            "calibration_texts": len(texts), **summary,
        }  # fmt: skip
        labels = {"source": "quantized", "scheme": scheme}
        return register_in_bentoml(out, name, labels=labels, metadata=metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", required=True, help="a Hugging Face checkpoint directory or a model-store tag"
    )
    parser.add_argument("--scheme", required=True, choices=SCHEMES)
    parser.add_argument("--name", required=True, help="model-store name of the result")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="CSV with a 'text' column, or .txt with one text per line (default: the shipped corpus)")  # fmt: skip
    parser.add_argument("--samples", type=int, default=32, help="calibration blocks of 128 tokens")
    args = parser.parse_args(argv)
    try:
        tag = quantize(args.model, args.scheme, args.name, args.calibration, args.samples)
    except QuantizeRequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(tag)


if __name__ == "__main__":
    main()
