"""Train a small Llama on the shipped docstring corpus, so that quantization has learned weights to damage.

Why: a random-weight model (models/build_tiny_llm.py) has no accuracy to lose, so the perplexity of a
quantized copy of it says nothing. This one is trained here, on about 90% of
``models/data/stdlib_docstrings.csv`` (models/corpus.py holds the rest out), in about a minute on 2 CPU
cores: a byte-level BPE tokenizer trained on the same split, a 4-layer Llama with hidden size 256 (every
linear layer's input a multiple of 128, the group size of W4A16 schemes), ~3.7 M parameters, fixed seed.

The result is a Hugging Face checkpoint (safetensors, config, tokenizer) in the BentoML model store as
``tiny-llm-trained:<fingerprint>``; the fingerprint hashes the corpus, the recipe below and the library
versions, so ``ensure_trained()`` (tests, CI, ``make tiny-trained``) trains only when the store lacks it.

    python -m models.train_tiny_llm            # prints the tag
    python -m models.train_tiny_llm --out DIR  # also leaves a copy in DIR
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from models.build_tiny_llm import CHAT_TEMPLATE, SPECIAL_TOKENS, log, save_tokenizer, train_tokenizer
from models.corpus import DATA_PATH, split
from models.lm_eval import encode, score

NAME = "tiny-llm-trained"
RECIPE: dict[str, Any] = {
    "vocab_size": 2048, "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 2,
    "num_attention_heads": 4, "head_dim": 64, "seq_len": 128, "batch_size": 16, "steps": 300,
    "lr": 3e-3, "warmup": 20, "weight_decay": 0.1, "seed": 0, "threads": 2,
}  # fmt: skip


def fingerprint(recipe: dict[str, Any] = RECIPE) -> str:
    import torch
    import transformers

    blob = repr(
        (sorted(recipe.items()), hashlib.sha256(DATA_PATH.read_bytes()).hexdigest(), torch.__version__,
         transformers.__version__)
    ).encode()  # fmt: skip
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def _stream(tokenizer: Any, texts: list[str], eos: int) -> Any:
    """Every training text as ids (<s> first, </s> last), concatenated."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids += [*tokenizer.encode(text).ids, eos]
    return torch.tensor(ids)


def train(out_dir: Path, recipe: dict[str, Any] = RECIPE) -> dict[str, Any]:
    """Write the trained checkpoint to out_dir; return its metadata (held-out perplexity included)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    r = recipe
    torch.manual_seed(r["seed"])
    torch.set_num_threads(r["threads"])  # the same reduction order on every machine with >= 2 cores
    started = time.monotonic()
    train_texts, held_out = split()
    tokenizer = train_tokenizer(r["vocab_size"], train_texts)
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    stream = _stream(tokenizer, train_texts, ids["</s>"])
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=r["hidden_size"],
        intermediate_size=r["intermediate_size"], num_hidden_layers=r["num_hidden_layers"],
        num_attention_heads=r["num_attention_heads"], num_key_value_heads=r["num_attention_heads"],
        head_dim=r["head_dim"], max_position_embeddings=2048, bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"], tie_word_embeddings=True, dtype="float32",
    )  # fmt: skip
    model = LlamaForCausalLM(config).to(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    log(f"training {params / 1e6:.2f} M parameters on {len(stream):,} tokens ({len(train_texts)} texts)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / r["warmup"]) * max(0.05, 1 - s / r["steps"])
    )
    n, seq = r["batch_size"], r["seq_len"]
    model.train()
    for step in range(r["steps"]):
        starts = torch.randint(0, len(stream) - seq, (n,))
        batch = torch.stack([stream[s : s + seq] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss  # the model shifts labels by one itself
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 25 == 0 or step == r["steps"] - 1:
            log(f"  step {step + 1}/{r['steps']}  loss {loss.item():.3f}  {time.monotonic() - started:.0f} s")
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_tokenizer(
        tokenizer, out_dir, chat_template=CHAT_TEMPLATE, model_max_length=2048,
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
    )  # fmt: skip
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    ).save_pretrained(out_dir)
    hf_tok = PreTrainedTokenizerFast.from_pretrained(out_dir)
    held = score(model, encode(hf_tok, held_out, 512))
    seconds = time.monotonic() - started
    log(f"held-out perplexity {held.perplexity:.2f} over {held.tokens} tokens; {seconds:.0f} s in all")
    return {
        "recipe": r, "parameters": params, "train_texts": len(train_texts), "held_out_texts": len(held_out),
        "train_tokens": len(stream), "final_loss": round(loss.item(), 4),
        "held_out_perplexity": round(held.perplexity, 3), "train_seconds": round(seconds, 1),
        "corpus": DATA_PATH.name,
    }  # fmt: skip


def ensure_trained(force: bool = False, out: Path | None = None) -> str:
    """The tag of the trained model: reused from the model store when this fingerprint is there."""
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{NAME}:{fingerprint()}"
    if not force:
        try:
            found = bentoml.models.get(tag)
            log(
                f"{tag} is in the model store (held-out perplexity {found.info.metadata['held_out_perplexity']})"
            )
            if out is not None:
                shutil.copytree(found.path, out, dirs_exist_ok=True)
            return tag
        except NotFound:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / NAME
        metadata = train(src)
        with bentoml.models.create(tag, labels={"source": "trained"}, metadata=metadata) as stored:
            shutil.copytree(src, stored.path, dirs_exist_ok=True)
        if out is not None:
            shutil.copytree(src, out, dirs_exist_ok=True)
    return tag


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="train even if the store has this version")
    parser.add_argument("--out", type=Path, default=None, help="also copy the checkpoint here")
    args = parser.parse_args(argv)
    print(ensure_trained(args.force, args.out))


if __name__ == "__main__":
    main()
