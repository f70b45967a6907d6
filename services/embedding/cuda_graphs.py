"""The embedding model's forward pass as captured CUDA graphs, on a GPU.

Why: on a GPU host the embedding worker's CPU, not the GPU, bounded text classification behind the public
port. Launching a pass's kernels one by one from Python kept the one worker process at 1.1 cores, ~60% of
its samples in the model call (H100 host, benchmarks/results/profile_text_gpu_h100_dec06h/). A captured
graph launches all of a pass's kernels in one call. A graph has fixed shapes, so a batch is padded to the
next (texts, tokens) bucket; the added tokens are masked out, as the tokenizer's own padding is.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.embedding.model import forward_pass, tokenized

if TYPE_CHECKING:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
SHORTEST_TOKENS = 16  # the smallest token bucket: a one-word text is 3 tokens, and a pass costs no less


def buckets(largest: int, smallest: int = 1) -> tuple[int, ...]:
    """Powers of two from ``smallest`` up to below ``largest``, then ``largest``: the captured shapes."""
    sizes: list[int] = []
    size = smallest
    while size < largest:
        sizes.append(size)
        size *= 2
    return (*sizes, largest)


def bucket_for(value: int, sizes: tuple[int, ...]) -> int | None:
    """The smallest of ``sizes`` that holds ``value``; None past the largest."""
    return next((size for size in sizes if size >= value), None)


def padded(features: dict[str, Any], rows: int, tokens: int) -> dict[str, Any]:
    """``features`` (texts x tokens tensors) grown to ``rows`` x ``tokens``: an added token is padding
    (id 0, mask 0) as the tokenizer's own; an added row attends to its first position only (a row with
    nothing to attend to makes attention NaN). Entries that are not such tensors are kept as they are."""
    import torch

    grown: dict[str, Any] = {}
    for name, value in features.items():
        if not (isinstance(value, torch.Tensor) and value.dim() == 2):
            grown[name] = value
            continue
        texts, length = value.shape
        tensor = value.new_zeros((rows, tokens))
        tensor[:texts, :length] = value
        if name == "attention_mask":
            tensor[texts:, 0] = 1
        grown[name] = tensor
    return grown


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, Any]  # the device tensors the graph reads: a replay's batch is copied into them
    output: torch.Tensor  # where the graph writes the sentence vectors


class GraphedEncoder:
    """``encode(texts)`` gives what ``encode_batch`` gives, by replaying the graph of the batch's bucket;
    a batch past the largest bucket runs eagerly.

    Every bucket is captured at start (largest first, so the smaller ones reuse its memory in their shared
    pool): a capture costs tens of milliseconds, which the first request of a new shape would pay.
    Replays run one at a time, under a lock: the graphs share that pool and each its input tensors. The
    batcher's other thread tokenizes meanwhile, the overlap its ``batches_in_flight`` is for.
    """

    def __init__(self, model: SentenceTransformer, max_texts: int) -> None:
        import torch

        self.model = model
        self.row_sizes = buckets(max_texts)
        self.token_sizes = buckets(int(model.max_seq_length or 512), SHORTEST_TOKENS)
        self._lock = threading.Lock()
        template = tokenized(model, ["a text the graphs are captured with"])
        self._keys = frozenset(template)
        pool = torch.cuda.graph_pool_handle()
        started = time.perf_counter()
        self._graphs = {
            (rows, tokens): self._capture(padded(template, rows, tokens), pool)
            for rows in reversed(self.row_sizes)
            for tokens in reversed(self.token_sizes)
        }
        log.info(
            "embedding model: %d CUDA graphs captured in %.1f s (texts %s x tokens %s)",
            len(self._graphs), time.perf_counter() - started, self.row_sizes, self.token_sizes,
        )  # fmt: skip

    @property
    def graph_count(self) -> int:
        return len(self._graphs)

    def _capture(self, features: dict[str, Any], pool: Any) -> _Graph:  # pool: a graph_pool_handle
        import torch

        device = self.model.device
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        with torch.inference_mode():
            side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm-up off the graph: lazy initialisation is not capturable
                for _ in range(2):
                    self.model(dict(inputs))
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                output = self.model(dict(inputs))["sentence_embedding"]
        return _Graph(graph, inputs, output)

    def encode(self, texts: list[str]) -> np.ndarray:
        """One pass over ``texts``: their float32 vectors, in order."""
        import torch

        features = tokenized(self.model, texts)
        texts_count, tokens = features["input_ids"].shape
        rows, width = bucket_for(texts_count, self.row_sizes), bucket_for(tokens, self.token_sizes)
        graph = self._graphs.get((rows, width)) if rows and width else None
        if graph is None or frozenset(features) != self._keys:
            return forward_pass(self.model, features)
        assert rows is not None and width is not None
        grown = padded(features, rows, width)
        with self._lock, torch.inference_mode():
            for name, static in graph.inputs.items():
                if isinstance(static, torch.Tensor):
                    static.copy_(grown[name])
            graph.graph.replay()
            vectors: np.ndarray = graph.output[:texts_count].float().cpu().numpy()
        return vectors


def graphed_or_eager(model: SentenceTransformer, max_texts: int) -> GraphedEncoder | None:
    """A GraphedEncoder, or None (with the reason logged) for a model whose pass cannot be captured."""
    try:
        return GraphedEncoder(model, max_texts)
    except RuntimeError as exc:  # e.g. a host sync inside the model's forward
        log.warning("embedding model: CUDA graphs off, eager passes (capture failed: %s)", exc)
        return None
