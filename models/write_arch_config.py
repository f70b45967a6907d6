"""Write a real architecture's config.json and a full-vocabulary tokenizer, without weights.

Why: benchmarks must run real model shapes (Llama-3.1-8B on the GPU machine), but no weights can be
downloaded here. vLLM's ``load_format="dummy"`` fills random weights from config.json alone; it still
needs a tokenizer whose size matches the embedding table. This writes both for a small table of presets:
the config in the Hub's own config.json format (so any transformers/vLLM version reads it) and a
``tokenizers`` tokenizer with exactly vocab_size ids, the family's special tokens at their real ids
and a chat template.

The tokenizer is a byte-level BPE over synthetic words (a space plus 1-4 lowercase letters), not a
WordLevel model: transformers 5 loads any "qwen2" model's tokenizer as Qwen2Tokenizer, which rebuilds
a byte-level BPE from tokenizer.json's vocab and merges and so drops every token of a WordLevel model.
Decode -> encode of random word ids is exact (honest ``vllm bench serve --dataset-name random`` prompt
lengths); real English costs about one token per 1-3 characters.

    python -m models.write_arch_config --preset qwen2.5-0.5b --out /tmp/qwen2.5-0.5b
    python -m vllm.entrypoints.openai.api_server --model /tmp/qwen2.5-0.5b --load-format dummy ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import string
import sys
from dataclasses import dataclass
from pathlib import Path

from models.build_tiny_llm import save_tokenizer

# Llama 3's pre-tokenizer split (Qwen2's differs only in splitting digits one by one).
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# "transformers_version" < 5 (as on the Hub) also keeps transformers 5 from warning about a Mistral regex.
_LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
    "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "hidden_act": "silu", "initializer_range": 0.02, "mlp_bias": False, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16", "transformers_version": "4.43.0", "use_cache": True, "vocab_size": 128256,
}  # fmt: skip
_LLAMA3_ROPE = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}  # fmt: skip
_QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu", "initializer_range": 0.02,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "use_cache": True,
    "transformers_version": "4.43.1", "use_sliding_window": False, "vocab_size": 151936,
}  # fmt: skip


@dataclass(frozen=True)
class Preset:
    family: str  # "llama3" or "qwen2": special tokens and chat template
    config: dict


def _shape(hidden: int, layers: int, heads: int, kv: int, head_dim: int, inter: int, tie: bool) -> dict:
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "head_dim": head_dim, "intermediate_size": inter,
            "tie_word_embeddings": tie}  # fmt: skip


PRESETS: dict[str, Preset] = {
    "llama-3.1-8b": Preset("llama3", {**_LLAMA, **_shape(4096, 32, 32, 8, 128, 14336, False),
                                      "rope_scaling": {**_LLAMA3_ROPE, "factor": 8.0}}),
    "llama-3.1-70b": Preset("llama3", {**_LLAMA, **_shape(8192, 80, 64, 8, 128, 28672, False),
                                       "rope_scaling": {**_LLAMA3_ROPE, "factor": 8.0}}),
    "llama-3.2-3b": Preset("llama3", {**_LLAMA, **_shape(3072, 28, 24, 8, 128, 8192, True),
                                      "rope_scaling": {**_LLAMA3_ROPE, "factor": 32.0}}),
    "llama-3.2-1b": Preset("llama3", {**_LLAMA, **_shape(2048, 16, 32, 8, 64, 8192, True),
                                      "rope_scaling": {**_LLAMA3_ROPE, "factor": 32.0}}),
    "qwen2.5-0.5b": Preset("qwen2", {**_QWEN2, **_shape(896, 24, 14, 2, 64, 4864, True),
                                     "max_position_embeddings": 32768, "sliding_window": 32768,
                                     "max_window_layers": 21}),
}  # fmt: skip

# The quantization_config that `python -m models.quantize` (llmcompressor 0.14, compressed-tensors 0.19)
# writes for each scheme, so that a dummy-weight checkpoint of a real shape runs the same vLLM kernels as a
# quantized one: speed needs the shape and the format, not learned weights. CI checks these against the
# quantizer's real output (tests/integration/test_quantization.py).
_W4A16 = {"actorder": None, "block_structure": None, "dynamic": False, "group_size": 128, "num_bits": 4,
          "observer": "memoryless_minmax", "observer_kwargs": {}, "scale_dtype": None, "strategy": "group",
          "symmetric": True, "type": "int", "zp_dtype": None}  # fmt: skip
_FP8 = {"actorder": None, "block_structure": None, "group_size": None, "num_bits": 8, "observer_kwargs": {},
        "scale_dtype": None, "symmetric": True, "type": "float", "zp_dtype": None}  # fmt: skip
_SCHEME_GROUPS = {
    "w4a16-gptq": ("pack-quantized", None, {**_W4A16, "actorder": "static"}),
    "w4a16-awq": ("pack-quantized", None, {**_W4A16, "symmetric": False, "zp_dtype": "torch.int8"}),
    "fp8-dynamic": ("float-quantized",
                    {**_FP8, "dynamic": True, "observer": None, "strategy": "token"},
                    {**_FP8, "dynamic": False, "observer": "memoryless_minmax", "strategy": "channel"}),
}  # fmt: skip
QUANT_SCHEMES = tuple(_SCHEME_GROUPS)


def quantization_config(scheme: str) -> dict:
    """config.json's ``quantization_config`` for one of models.quantize's schemes."""
    fmt, activations, weights = _SCHEME_GROUPS[scheme]
    group = {"format": fmt, "input_activations": activations, "output_activations": None,
             "targets": ["Linear"], "weights": weights}  # fmt: skip
    return {"config_groups": {"group_0": group}, "format": fmt, "global_compression_ratio": None,
            "ignore": ["lm_head"], "kv_cache_scheme": None, "quant_method": "compressed-tensors",
            "quantization_status": "compressed", "sparsity_config": {}, "transform_config": {},
            "version": "0.19.0"}  # fmt: skip


_LLAMA3_NAMED = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128004: "<|finetune_right_pad_id|>",
                 128006: "<|start_header_id|>", 128007: "<|end_header_id|>", 128008: "<|eom_id|>",
                 128009: "<|eot_id|>", 128010: "<|python_tag|>"}  # fmt: skip
# ids 151643..151664
_QWEN2_NAMED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
                "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                "<|repo_name|>", "<|file_sep|>"]  # fmt: skip
FAMILIES = {
    "llama3": {
        "special_tokens": lambda: _LLAMA3_NAMED | {
            i: f"<|reserved_special_token_{n}|>"
            for n, i in enumerate(i for i in range(128000, 128256) if i not in _LLAMA3_NAMED)
        },
        "tokens": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                   "pad_token": "<|finetune_right_pad_id|>"},
        "chat_template": (
            "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
            "{{ m['content'] }}<|eot_id|>{% endfor %}"
            "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
        ),
    },
    "qwen2": {
        "special_tokens": lambda: dict(enumerate(_QWEN2_NAMED, start=151643)),
        "tokens": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "chat_template": (
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        ),
    },
}  # fmt: skip


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def param_count(cfg: dict) -> int:
    """Parameters of a Llama/Qwen2-style decoder (Qwen2's q/k/v biases included)."""
    h, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    bias = q + 2 * kv if cfg["model_type"] == "qwen2" else 0
    layer = h * q + 2 * h * kv + q * h + bias + 3 * h * inter + 2 * h
    return cfg["num_hidden_layers"] * layer + vocab * h * (1 if cfg["tie_word_embeddings"] else 2) + h


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which tokenizers' ByteLevel uses (space -> "Ġ")."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in keep]
    return {b: chr(b) for b in keep} | {b: chr(256 + n) for n, b in enumerate(others)}


def _words(count: int) -> list[str]:
    """count strings " a".." z", " aa".." zz", ... in order: each one's prefix comes before it."""
    letters = string.ascii_lowercase
    every = itertools.chain.from_iterable(itertools.product(letters, repeat=n) for n in range(1, 5))
    words = [" " + "".join(chars) for chars in itertools.islice(every, count)]
    if len(words) < count:
        raise ValueError(f"{count} words need more than 4 letters")
    return words


def build_tokenizer(family: str, vocab_size: int):  # -> tokenizers.Tokenizer
    """Byte-level BPE over exactly vocab_size ids: 256 bytes, synthetic words, the family's specials.

    Words are a space plus 1-4 lowercase letters, each built by one merge (prefix + last letter), so
    decode -> encode of any word sequence gives back the same ids.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    specials: dict[int, str] = FAMILIES[family]["special_tokens"]()
    first_special = min(specials)
    specials |= {i: f"<|extra_{i}|>" for i in range(first_special, vocab_size) if i not in specials}
    byte_char = _bytes_to_unicode()
    space = byte_char[ord(" ")]
    words = [w.replace(" ", space) for w in _words(first_special - 256)]
    vocab = {byte_char[b]: b for b in range(256)} | {w: 256 + i for i, w in enumerate(words)}
    merges = [(w[:-1], w[-1]) for w in words]
    vocab |= {tok: i for i, tok in specials.items()}
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([specials[i] for i in sorted(specials)])  # already in vocab: ids kept
    bos = FAMILIES[family]["tokens"]["bos_token"]
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    assert tok.get_vocab_size(with_added_tokens=True) == vocab_size
    return tok


def write_arch_config(
    preset: str, out_dir: Path, num_layers: int | None = None, quant_scheme: str | None = None
) -> Path:
    """Write config.json, generation_config.json, tokenizer.json and tokenizer_config.json; with
    ``quant_scheme`` the config declares that checkpoint format (vLLM's dummy loader then fills the packed
    int4 or fp8 tensors and their scales)."""
    spec = PRESETS[preset]
    cfg = dict(spec.config)
    if num_layers:
        cfg["num_hidden_layers"] = num_layers
    if quant_scheme:
        cfg["quantization_config"] = quantization_config(quant_scheme)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    # No sampling defaults (the real repos set temperature/top_p): vLLM would apply them to benchmarks.
    gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}
    (out_dir / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    family = FAMILIES[spec.family]
    save_tokenizer(
        build_tokenizer(spec.family, cfg["vocab_size"]), out_dir, chat_template=family["chat_template"],
        model_max_length=cfg["max_position_embeddings"], **family["tokens"],
    )  # fmt: skip
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="llama-3.1-8b")
    parser.add_argument("--out", type=Path, help="output directory (default: ./<preset>)")
    parser.add_argument("--num-layers", type=int, default=None, help="override num_hidden_layers")
    parser.add_argument("--quant-scheme", choices=QUANT_SCHEMES, help="declare this quantized format")
    parser.add_argument("--list", action="store_true", help="print the presets and their sizes")
    args = parser.parse_args(argv)
    if args.list:
        for name, spec in PRESETS.items():
            n = param_count(spec.config)
            print(f"{name:14s} {n / 1e9:5.2f} B params, {2 * n / 2**30:5.1f} GiB in bf16")
        return
    out = write_arch_config(args.preset, args.out or Path(args.preset), args.num_layers, args.quant_scheme)
    cfg = json.loads((out / "config.json").read_text())
    n = param_count(cfg)
    log(f"{args.preset}: {n / 1e9:.2f} B params, dummy weights need ~{2 * n / 2**30:.1f} GiB in bf16")
    print(out)


if __name__ == "__main__":
    main()
