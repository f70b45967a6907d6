"""Scoring a causal LM on held-out texts: perplexity and top-1 next-token predictions.

Why here and shared: the trainer stores the held-out perplexity of the model it made, and the
quantization evaluation (models/quant_eval.py, run in the quantizer's environment) compares each
quantized checkpoint with the original on the same texts with the same function. Needs torch and
transformers only, which both environments have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Scores:
    """Summed next-token negative log-likelihood, the number of scored tokens, and per text the argmax
    prediction at every position (for agreement between two models)."""

    nll: float
    tokens: int
    top1: list[Any]

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens)


def encode(tokenizer: Any, texts: list[str], max_len: int) -> list[Any]:
    """Token ids per text (with <s>, capped at max_len), texts of a single token dropped: nothing to score."""
    import torch

    out = []
    for text in texts:
        ids = tokenizer(text)["input_ids"][:max_len]
        if len(ids) > 1:
            out.append(torch.tensor([ids]))
    return out


def score(model: Any, batches: list[Any]) -> Scores:
    """One forward pass per text (texts are short, the model tiny: padding would cost more than it saves)."""
    import torch
    import torch.nn.functional as F

    nll, tokens, top1 = 0.0, 0, []
    with torch.no_grad():
        for ids in batches:
            logits = model(input_ids=ids).logits[0, :-1].float()
            target = ids[0, 1:]
            nll += float(F.cross_entropy(logits, target, reduction="sum"))
            tokens += int(target.numel())
            top1.append(logits.argmax(-1))
    return Scores(nll, tokens, top1)


def agreement(a: Scores, b: Scores) -> float:
    """Share of positions where both models predict the same next token."""
    same = sum(int((x == y).sum()) for x, y in zip(a.top1, b.top1, strict=True))
    return same / sum(int(x.numel()) for x in a.top1)
