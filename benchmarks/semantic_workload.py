"""Near-duplicate prompt traffic for the semantic-cache benchmark, and the cache's decisions replayed offline.

A workload is base prompts, then near-duplicates of them in a shuffled order: the same text with its
case changed, its punctuation changed, extra whitespace, or a small edit (a dropped word, two letters
swapped), all with the base's sampling parameters (temperature 0, same ``max_tokens``). A semantic hit on
those is the cache doing its job. Mixed in are near-duplicates with DIFFERENT sampling parameters (another
``max_tokens``; temperature 0.7 with a seed, still cacheable): a semantic hit on one of those would
serve an answer generated under other parameters, so it counts as a wrong answer.

``replay`` runs the service's own ``SemanticIndex`` and ``signature`` over the same requests in the same
order with the prompts' embeddings, so the hit rate at any threshold follows from one embedding pass
(checked against the served Bento at its threshold in the same run).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.cache.keys import canonical_json
from services.llm.semantic import SemanticIndex, prompt_text, signature

ROUTE = "/v1/completions"
SAME_PARAMS = ("case", "punctuation", "whitespace", "edit")
OTHER_PARAMS = ("other_max_tokens", "other_temperature_seed")


@dataclass(frozen=True)
class Request:
    """One request of the workload: its kind, the base it derives from, and the body sent."""

    kind: str  # "base", one of SAME_PARAMS or one of OTHER_PARAMS
    base: int
    payload: dict[str, Any] = field(hash=False)

    @property
    def text(self) -> str:
        return str(self.payload["prompt"])


def near_duplicate(text: str, kind: str, rng: random.Random) -> str:
    """``text`` changed the way a person retyping it would: same meaning, other bytes."""
    if kind == "case":
        return text.lower() if rng.random() < 0.5 else text.upper()
    if kind == "punctuation":
        core = text.rstrip(".?!")
        return core + rng.choice(("?", "!", "", "...")) if core != text else core + "."
    if kind == "whitespace":
        words = text.split(" ")
        at = rng.randrange(1, len(words))
        return "  " + " ".join(words[:at]) + "  \n " + " ".join(words[at:]) + " "
    if kind == "edit":
        words = text.split(" ")
        swaps = [(i, j) for i, w in enumerate(words) for j in range(1, len(w) - 2) if w[j] != w[j + 1]]
        if rng.random() < 0.5 or not swaps:
            del words[rng.randrange(1, len(words))]  # drop one word
        else:
            i, j = rng.choice(swaps)
            w = words[i]
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]  # a typo: two different letters swapped
        return " ".join(words)
    raise ValueError(f"unknown near-duplicate kind {kind!r}")


def payload(model: str, prompt: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    """A non-streamed, deterministic completion (temperature 0 unless ``extra`` says otherwise)."""
    body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}
    return body | extra


def build_workload(bases: Sequence[str], model: str, max_tokens: int, seed: int) -> list[Request]:
    """Every base once (in order), then one near-duplicate of each kind per base, shuffled together."""
    rng = random.Random(seed)
    first = [Request("base", i, payload(model, text, max_tokens)) for i, text in enumerate(bases)]
    later = []
    for i, text in enumerate(bases):
        for kind in SAME_PARAMS:
            later.append(Request(kind, i, payload(model, near_duplicate(text, kind, rng), max_tokens)))
        changed = near_duplicate(text, rng.choice(SAME_PARAMS), rng)
        later.append(Request("other_max_tokens", i, payload(model, changed, max_tokens + 8)))
        later.append(Request("other_temperature_seed", i, payload(model, changed, max_tokens, temperature=0.7, seed=7)))  # fmt: skip
    rng.shuffle(later)
    return first + later


def normalized(text: str) -> str:
    """What a case/space/punctuation-insensitive exact match would compare (for a reader's intuition)."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


@dataclass(frozen=True)
class Decision:
    """What the cache would answer: "miss", "hit" (exact) or "semantic-hit" from which earlier request."""

    cache: str
    source: int | None = None  # index of the request whose answer is served
    similarity: float | None = None


def replay(requests: Sequence[Request], vectors: np.ndarray, threshold: float) -> list[Decision]:
    """The Bento's response-cache decisions for ``requests`` sent one at a time in this order: an exact
    key answers first; else the most similar earlier stored prompt with the same signature, when its
    cosine similarity reaches ``threshold``; a miss stores the prompt (``SemanticIndex`` itself)."""
    index = SemanticIndex(threshold)
    exact: dict[str, int] = {}
    out = []
    for i, (request, vector) in enumerate(zip(requests, vectors, strict=True)):
        key = canonical_json(request.payload)
        if key in exact:
            out.append(Decision("hit", exact[key]))
            continue
        sig = signature(ROUTE, request.payload)
        found = index.find(sig, vector)
        if found is not None:
            out.append(Decision("semantic-hit", int(found[0]), found[1]))
            continue
        exact[key] = i
        index.add(sig, vector, str(i))
        out.append(Decision("miss"))
    return out


def texts(requests: Sequence[Request]) -> list[str]:
    """The text the service embeds for each request (``prompt_text``, as the proxy does)."""
    return [prompt_text(r.payload) or "" for r in requests]


def score(
    requests: Sequence[Request], caches: Sequence[str], sources: Sequence[int | None]
) -> dict[str, Any]:
    """Hit fractions per kind and the two kinds of wrong answer: a semantic hit for other sampling
    parameters (``wrong_params``), and one served from another base's prompt (``wrong_base``)."""
    by_kind: dict[str, dict[str, int]] = {}
    wrong_params = wrong_base = 0
    for request, cache, source in zip(requests, caches, sources, strict=True):
        counts = by_kind.setdefault(request.kind, {"requests": 0, "semantic_hits": 0})
        counts["requests"] += 1
        if cache != "semantic-hit":
            continue
        counts["semantic_hits"] += 1
        wrong_params += request.kind in OTHER_PARAMS
        wrong_base += source is not None and requests[source].base != request.base
    same = [by_kind.get(k, {"requests": 0, "semantic_hits": 0}) for k in SAME_PARAMS]
    answered = sum(c["semantic_hits"] for c in same) / max(sum(c["requests"] for c in same), 1)
    return {"near_duplicates_answered": answered, "wrong_params": wrong_params, "wrong_base": wrong_base,
            "by_kind": by_kind}  # fmt: skip
