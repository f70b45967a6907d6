"""Import a local Hugging Face model directory into the BentoML model store.

Why: services load LLMs from the BentoML model store (``bentoml.models.get(tag).path``) so that a Bento
pins the exact files it was built with, and there is no model hub here (``HuggingFaceModel`` resolves
on the Hub at build time). This checks that the directory looks like a Hugging Face model (config.json,
weights, tokenizer) and copies it in with ``register_in_bentoml`` from ``models.build_tiny_llm``, which
shows progress on large copies and reuses an already imported copy with the same content hash.

    python -m models.import_hf /data/Llama-3.1-8B-Instruct --name llama-3.1-8b-instruct
    python -m models.import_hf /tmp/qwen2.5-0.5b --name qwen-dummy --allow-no-weights   # load_format=dummy
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.build_tiny_llm import iter_files, log, register_in_bentoml

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")


def inspect_hf_dir(src_dir: Path, *, require_weights: bool = True) -> dict:
    """Validate src_dir; return a summary. Raises FileNotFoundError/ValueError when it is unusable."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise FileNotFoundError(f"{src_dir} is not a directory")
    config_path = src_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{src_dir} has no config.json: not a Hugging Face model directory")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or not ("model_type" in config or "architectures" in config):
        raise ValueError(f"{config_path} has neither model_type nor architectures")
    files = list(iter_files(src_dir))
    weights = [f for f in files if f.suffix in WEIGHT_SUFFIXES]
    if require_weights and not weights:
        raise FileNotFoundError(
            f"{src_dir} has no weight files ({', '.join(WEIGHT_SUFFIXES)}); pass --allow-no-weights "
            "for a config-only directory served with load_format=dummy"
        )
    tokenizer = [f.name for f in files if f.name in TOKENIZER_FILES]
    if not tokenizer:
        log(f"warning: {src_dir} has no tokenizer file ({', '.join(TOKENIZER_FILES)})")
    return {
        "architectures": config.get("architectures", []),
        "model_type": config.get("model_type", ""),
        "files": len(files),
        "weight_files": len(weights),
        "total_bytes": sum(f.stat().st_size for f in files),
        "tokenizer_files": tokenizer,
    }


def import_hf_model(src_dir: Path, name: str, *, require_weights: bool = True) -> str:
    """Validate src_dir and copy it into the BentoML model store as `name`; return the tag."""
    summary = inspect_hf_dir(src_dir, require_weights=require_weights)
    log(
        f"importing {src_dir}: {summary['model_type'] or '?'} {summary['architectures']}, "
        f"{summary['files']} files ({summary['weight_files']} weight files), "
        f"{summary['total_bytes'] / 2**30:.2f} GiB"
    )
    labels = {"source": "hf-import", "model-type": summary["model_type"] or "unknown"}
    metadata = {k: summary[k] for k in ("architectures", "model_type", "total_bytes", "weight_files")}
    return register_in_bentoml(Path(src_dir), name, labels=labels, metadata=metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="local Hugging Face model directory")
    parser.add_argument("--name", required=True, help="BentoML model name, e.g. llama-3.1-8b-instruct")
    parser.add_argument("--allow-no-weights", action="store_true",
                        help="accept a config-only directory (for load_format=dummy)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        tag = import_hf_model(args.src, args.name, require_weights=not args.allow_no_weights)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(tag)


if __name__ == "__main__":
    main()
