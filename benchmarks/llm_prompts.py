"""The prompts of an LLM load: random token ids, optionally behind shared prefixes, and Zipf-popular
repeats with the ceiling a response cache can reach on them.

Prompts are random token ids (exact input length) or their decoded text, deterministic from a seed,
and unique per request in their first KV-cache block, so neither vLLM's prefix cache nor our response
cache helps either target unless a load asks for it (``prefix_len``, ``zipf_sequence``).
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

UNIQUE_PREFIX_TOKENS = 16  # vLLM's default KV block size: prompts differ in their first block


def _vocab(model_dir: Path) -> tuple[int, set[int]]:
    """Vocabulary size and the ids of special (added) tokens, which a random prompt avoids."""
    vocab_size = int(json.loads((model_dir / "config.json").read_text())["vocab_size"])
    special: set[int] = set()
    tokenizer_file = model_dir / "tokenizer.json"
    if tokenizer_file.exists():
        special = {int(t["id"]) for t in json.loads(tokenizer_file.read_text()).get("added_tokens", [])}
    return vocab_size, special


def random_prompts(
    model_dir: Path,
    count: int,
    input_len: int,
    seed: int,
    kind: str = "ids",
    prefix_len: int = 0,
    prefix_count: int = 1,
) -> list[list[int] | str]:
    """``count`` prompts of ``input_len`` random non-special token ids, unique in their first block;
    with ``prefix_len``, all start with the same ``prefix_len`` random ids (a shared system prompt, as
    ``vllm bench serve --random-prefix-len`` builds it) and are unique in the first block after it;
    with ``prefix_count`` > 1, each starts with one of that many prefixes, drawn uniformly (tenants).

    kind "ids" sends the ids (exact length, no tokenizer round trip); "text" sends their decoded text
    (what a real client sends; its length after re-tokenization is whatever the usage chunk reports).
    """
    vocab_size, special = _vocab(model_dir)
    pool = [i for i in range(vocab_size) if i not in special]
    rng = random.Random(seed)
    prefixes = [rng.choices(pool, k=prefix_len) for _ in range(prefix_count)]
    tenant = random.Random(seed + 1)  # its own stream: one prefix gives the same prompts as before
    prompts: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    while len(prompts) < count:
        ids = rng.choices(pool, k=input_len)
        head = tuple(ids[:UNIQUE_PREFIX_TOKENS])
        if head not in seen:  # practically never taken twice; checked so the claim always holds
            seen.add(head)
            prompts.append(prefixes[tenant.randrange(prefix_count)] + ids)
    if kind == "ids":
        return list(prompts)
    from tokenizers import Tokenizer  # only for text prompts; transformers brings it everywhere

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in prompts]


def zipf_sequence(distinct: Sequence[Any], count: int, exponent: float, seed: int) -> list[Any]:
    """``count`` draws from ``distinct`` with Zipf popularity (the k-th most popular drawn in
    proportion to 1/k**exponent): a few prompts asked again and again, a long tail asked once or twice."""
    weights = [1 / (rank**exponent) for rank in range(1, len(distinct) + 1)]
    return random.Random(seed).choices(list(distinct), weights=weights, k=count)


def zipf_makespan_s(sequence: Sequence[Any], clients: int, generation_s: float, hit_s: float = 0.0) -> float:
    """How long ``clients`` closed-loop clients take to send ``sequence`` through a response cache that
    generates each distinct prompt once in ``generation_s`` and answers every repeat in ``hit_s``; a
    repeat sent while its first generation runs waits for it (coalesced). With ``hit_s=0`` and raw
    vLLM's own latency per generation, this is the best any cache in front of that engine can do on the
    workload: the ceiling against which a measured Zipf ratio is read."""
    free_at = [0.0] * clients
    generated_by: dict[Any, float] = {}
    end = 0.0
    for prompt in sequence:
        start = heapq.heappop(free_at)
        if prompt in generated_by:
            done = max(start, generated_by[prompt]) + hit_s
        else:
            done = generated_by[prompt] = start + generation_s
        end = max(end, done)
        heapq.heappush(free_at, done)
    return end
