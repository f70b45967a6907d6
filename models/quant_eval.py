"""Perplexity on held-out text and top-1 agreement of quantized checkpoints with their original.

    python -m models.quant_eval --original tiny-llm-trained --quantized tiny-llm-trained-gptq ... \
        --out benchmarks/results/quantization_cpu.json

How it measures: in the quantizer's environment (models/quant_env.py), transformers loads each checkpoint
and compressed-tensors decompresses it (int4 weights back to their dequantized floats, FP8 weights to
their fp8-rounded values); each held-out docstring of models/corpus.py is scored in one forward pass
(models/lm_eval.py). It measures what the weights lose; FP8-dynamic's activation rounding at run time is
NOT in it (vLLM applies that in its kernel). Tags are resolved to directories here, in the main venv
(the quantizer env has no BentoML); the worker half (``--worker``) takes directories.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from models.corpus import split
from models.lm_eval import agreement, encode, score


def evaluate(original: Path, quantized: dict[str, Path]) -> dict[str, Any]:
    """Quant env: score the original and each quantized directory on the held-out texts."""
    import compressed_tensors
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    _, held_out = split()
    batches = encode(AutoTokenizer.from_pretrained(original), held_out, 512)
    base = score(AutoModelForCausalLM.from_pretrained(original, dtype=torch.float32).eval(), batches)
    rows = [
        {
            "model": "original",
            "scheme": "none",
            "perplexity": round(base.perplexity, 3),
            "top1_agreement": 1.0,
        }
    ]
    for name, path in quantized.items():
        config = json.loads((path / "config.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        got = score(model, batches)
        qconfig = config.get("quantization_config", {})
        rows.append({
            "model": name, "format": qconfig.get("format"),
            "perplexity": round(got.perplexity, 3), "top1_agreement": round(agreement(base, got), 4),
            "weights_bytes": sum(f.stat().st_size for f in path.glob("*.safetensors")),
        })  # fmt: skip
    return {
        "held_out_texts": len(held_out), "scored_tokens": base.tokens, "rows": rows,
        "original_weights_bytes": sum(f.stat().st_size for f in original.glob("*.safetensors")),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "compressed_tensors": compressed_tensors.__version__},
    }  # fmt: skip


def resolve(tag_or_dir: str) -> tuple[str, Path]:
    from models.quantize import resolve as resolve_model

    path, source = resolve_model(tag_or_dir)
    return source, path


def scheme_of(tag: str) -> str:
    """The scheme models.quantize recorded for a model-store tag; "?" for a bare directory."""
    import bentoml

    try:
        return str(bentoml.models.get(tag).info.metadata.get("scheme", "?"))
    except Exception:  # a directory, not a tag
        return "?"


BEGIN, END = "<!-- quantization_cpu table: python -m models.quant_eval writes it -->", "<!-- end table -->"


def markdown_table(report: dict[str, Any]) -> str:
    """The table docs/QUANTIZATION.md shows, from the JSON report (never typed by hand)."""
    lines = [
        "| checkpoint | scheme | weights (KiB) | held-out perplexity | top-1 agreement with original |",
        "| --- | --- | ---: | ---: | ---: |",
        f"| {report['original']} | none (float32) | {report['original_weights_bytes'] // 1024} | "
        f"{report['rows'][0]['perplexity']:.2f} | 100% |",
    ]
    for row in report["rows"][1:]:
        lines.append(
            f"| {row['model']} | {row['scheme']} | {row['weights_bytes'] // 1024} | {row['perplexity']:.2f} | "
            f"{100 * row['top1_agreement']:.1f}% |"
        )
    return "\n".join(lines)


def write_table(report: dict[str, Any], doc: Path) -> None:
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{markdown_table(report)}\n{END}{tail}")


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="directory or model-store tag")
    parser.add_argument(
        "--quantized", nargs="+", required=True, help="directories or tags (name=... allowed)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file; default: print")
    parser.add_argument("--doc", type=Path, default=None, help="markdown file whose table to rewrite")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # inside the quantizer env: directories only, result JSON on stdout's last line
        quantized = dict(item.split("=", 1) for item in args.quantized)
        result = evaluate(Path(args.original), {k: Path(v) for k, v in quantized.items()})
        print(json.dumps(result))
        return
    from models.quant_env import ensure_env

    original_tag, original_dir = resolve(args.original)
    pairs = [resolve(q) for q in args.quantized]
    worker_args = [
        "--worker",
        "--original",
        str(original_dir),
        "--quantized",
        *(f"{t}={p}" for t, p in pairs),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile("w+") as out:
        subprocess.run(
            [str(ensure_env()), "-m", "models.quant_eval", *worker_args], stdout=out, env=env, check=True
        )
        out.seek(0)
        result = json.loads(out.read().strip().splitlines()[-1])
    for row in result["rows"][1:]:
        row["scheme"] = scheme_of(row["model"])
    report = {
        "benchmark": "quantization_cpu", "original": original_tag, **result,
        "method": "transformers + compressed-tensors decompression in .venv-quant, float32, one forward per text",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "commit": commit(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    if args.doc:
        write_table(report, args.doc)
    print(text)


if __name__ == "__main__":
    main()
