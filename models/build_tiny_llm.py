"""Build a tiny random-weight Llama (and its tokenizer) for tests, offline and deterministically.

Why: there is no model hub here and no LLM weights can be installed, yet the vLLM services need a real
model directory to start. This builds one in about a second: a byte-level BPE tokenizer (1,024 tokens)
and a 2-layer Llama (hidden 64, 2 heads of head_dim 32, the smallest head size CPU attention supports).
Its output is random text; only the plumbing (loading, batching, streaming, metrics) is meaningful.

Tokenizer training text: the docstrings of a fixed list of standard-library modules plus the decoded
Zen of Python (``this.py``), parsed with ``ast`` from the running interpreter's stdlib directory
(``sysconfig.get_paths()["stdlib"]``, present in every CPython install and venv). It is identical
for a given Python version; the weights depend only on the seed and the vocabulary size.

``register_in_bentoml`` copies any model directory into the BentoML model store (offline) and is
idempotent: a model with the same content hash in its metadata is reused, not copied again.
"""

from __future__ import annotations

import argparse
import ast
import codecs
import functools
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SPECIAL_TOKENS = ["<s>", "</s>", "<unk>", "<pad>"]  # ids 0, 1, 2, 3
VOCAB_SIZE = 1024
CORPUS_MODULES = [
    "argparse.py", "collections/__init__.py", "contextlib.py", "dataclasses.py", "enum.py",
    "functools.py", "inspect.py", "json/__init__.py", "logging/__init__.py", "pathlib.py",
    "random.py", "shutil.py", "string.py", "subprocess.py", "tarfile.py", "textwrap.py",
    "threading.py", "typing.py", "unittest/case.py", "zipfile.py",
]  # fmt: skip
# Role tags in plain text: the tokenizer has no dedicated chat tokens. Works with vLLM's chat endpoint
# (string content format) and with transformers' apply_chat_template.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
CONTENT_HASH_KEY = "content_hash"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@functools.cache
def corpus_texts() -> tuple[str, ...]:
    """Docstrings of CORPUS_MODULES and the Zen of Python, in a fixed order (parsed once, ~0.5 s)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    this_tree = ast.parse((stdlib / "this.py").read_text(encoding="utf-8"))
    zen = next(n.value.value for n in this_tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "s")
    texts = [codecs.decode(zen, "rot13")]
    for rel in CORPUS_MODULES:
        path = stdlib / rel
        if not path.exists():  # a module that became a package (zipfile in Python 3.12)
            path = stdlib / rel.removesuffix(".py") / "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    texts.append(doc)
    return tuple(texts)


def train_tokenizer(vocab_size: int = VOCAB_SIZE, texts: tuple[str, ...] | list[str] | None = None):
    """A byte-level BPE tokenizer trained on ``texts`` (default corpus_texts()) that prepends <s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_texts() if texts is None else texts, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tok


def save_tokenizer(tok, out_dir: Path, *, chat_template: str, model_max_length: int,
                   **special: str | None) -> None:  # fmt: skip
    """Write tokenizer.json and a hand-written tokenizer_config.json for PreTrainedTokenizerFast.

    transformers 5's save_pretrained writes tokenizer_class "TokenizersBackend" and a separate
    chat_template.jinja, which transformers 4.x (vLLM 0.26 on the GPU machine) cannot read; this
    layout (chat_template inline) loads in both. special: bos_token, eos_token, unk_token, pad_token.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "chat_template": chat_template,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def build_tiny_llm(out_dir: Path, seed: int = 0) -> Path:
    """Write tokenizer, config.json, model.safetensors (float32) and generation_config.json to out_dir."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer()
    save_tokenizer(
        tokenizer, out_dir, chat_template=CHAT_TEMPLATE, model_max_length=2048,
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
    )  # fmt: skip
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
        bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"],
        tie_word_embeddings=True, dtype="float32",
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    # No sampling defaults: vLLM would take e.g. max_new_tokens from here as its default max_tokens.
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    ).save_pretrained(out_dir)
    return out_dir


def iter_files(src_dir: Path) -> Iterator[Path]:
    """Files under src_dir in a fixed order, skipping hidden entries (.git, .cache, ...)."""
    for path in sorted(Path(src_dir).rglob("*")):
        rel = path.relative_to(src_dir)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            yield path


def _bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class _Progress:
    """Prints `verb done/total (pct)` at most every 2 s, only for totals over 64 MiB."""

    def __init__(self, verb: str, total: int) -> None:
        self.verb, self.total, self.done, self.last = verb, total, 0, time.monotonic()
        self.quiet = total < 64 * 2**20

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if not self.quiet and (now - self.last >= 2 or self.done == self.total):
            self.last = now
            log(
                f"  {self.verb} {_bytes(self.done)} / {_bytes(self.total)} ({100 * self.done / self.total:.0f}%)"
            )


def content_hash(src_dir: Path) -> str:
    """sha256 over the relative paths and bytes of every file iter_files yields."""
    files = list(iter_files(src_dir))
    progress = _Progress("hashed", sum(f.stat().st_size for f in files))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(src_dir).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(16 * 2**20):
                digest.update(chunk)
                progress.add(len(chunk))
    return digest.hexdigest()


def _copy_tree(src_dir: Path, dst_dir: Path) -> None:
    """Hard-link files where possible (bentoml copies them once more into its store), else copy."""
    files = list(iter_files(src_dir))
    progress = _Progress("copied", sum(f.stat().st_size for f in files))
    for path in files:
        target = dst_dir / path.relative_to(src_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
            progress.add(path.stat().st_size)
            continue
        except OSError:
            pass
        with path.open("rb") as fin, target.open("wb") as fout:
            while chunk := fin.read(16 * 2**20):
                fout.write(chunk)
                progress.add(len(chunk))


def register_in_bentoml(
    src_dir: Path, name: str = "tiny-llm", *, labels: dict[str, str] | None = None,
    metadata: dict[str, object] | None = None,
) -> str:  # fmt: skip
    """Copy src_dir into the BentoML model store as `name`; reuse a model with the same content hash.

    Returns the tag ("name:version"). The files sit at bentoml.models.get(tag).path.
    """
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")  # no usage-tracking POST from an offline box
    import bentoml
    from bentoml.exceptions import NotFound

    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise NotADirectoryError(f"{src_dir} is not a directory")
    digest = content_hash(src_dir)
    try:
        existing = bentoml.models.list(name)
    except NotFound:
        existing = []
    for model in existing:
        if model.info.metadata.get(CONTENT_HASH_KEY) == digest:
            log(f"reusing {model.tag} (same content hash {digest[:12]})")
            return str(model.tag)
    meta = {**(metadata or {}), CONTENT_HASH_KEY: digest, "source_dir": str(src_dir.resolve())}
    all_labels = {**(labels or {}), "content-hash": digest[:32]}
    start = time.monotonic()
    with bentoml.models.create(name, labels=all_labels, metadata=meta) as model:
        _copy_tree(src_dir, Path(model.path))
        log(f"saving {name} into the BentoML model store ...")
    log(f"saved {model.tag} in {time.monotonic() - start:.1f} s")
    return str(model.tag)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: a temporary dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="tiny-llm", help="BentoML model name")
    parser.add_argument("--register", action=argparse.BooleanOptionalAction, default=True,
                        help="also copy the model into the BentoML model store")  # fmt: skip
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="tiny-llm-"))
    start = time.monotonic()
    build_tiny_llm(out, seed=args.seed)
    log(f"built tiny Llama in {out} ({time.monotonic() - start:.1f} s)")
    if args.register:
        print(register_in_bentoml(out, args.name))
    else:
        print(out)
    if args.out is None and args.register:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
