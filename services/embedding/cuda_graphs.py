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

from services.embedding.model import FeatureLayout, forward_pass, max_tokens, on_device, tokenized

if TYPE_CHECKING:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
SHORTEST_TOKENS = 16  # the smallest token bucket: a one-word text is 3 tokens, and a pass costs no less
CHECK_ATOL = 1e-3  # replay vs eager at start: H100, MiniLM, 1..65 texts agreed to 1e-4 (tests/gpu)


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


def padded(features: dict[str, Any], rows: int, tokens: int, pad_id: int = 0) -> dict[str, Any]:
    """``features`` (texts x tokens tensors) grown to ``rows`` x ``tokens``: an added token is padding
    (``pad_id``, mask 0) as the tokenizer's own; an added row attends to its first position only (a row with
    nothing to attend to makes attention NaN). Other entries (sentence-transformers' ``modality``) are kept."""
    import torch

    grown: dict[str, Any] = {}
    for name, value in features.items():
        if not isinstance(value, torch.Tensor):
            grown[name] = value
            continue
        texts, length = value.shape
        tensor = value.new_full((rows, tokens), pad_id if name == "input_ids" else 0)
        tensor[:texts, :length] = value
        if name == "attention_mask":
            tensor[texts:, 0] = 1
        grown[name] = tensor
    return grown


def cells(
    row_sizes: tuple[int, ...], token_sizes: tuple[int, ...], max_cell_tokens: int
) -> list[tuple[int, int]]:
    """The (texts, tokens) buckets to capture, largest first (the smaller ones then reuse its memory in the
    shared pool), none past ``max_cell_tokens`` texts x tokens: the pool is sized by its largest cell."""
    fitting = [
        (rows, tokens) for rows in row_sizes for tokens in token_sizes if rows * tokens <= max_cell_tokens
    ]
    return sorted(fitting, key=lambda cell: (cell[0] * cell[1], cell[0]), reverse=True)


class NotCapturable(RuntimeError):
    """The model's pass cannot be served from graphs: the caller keeps eager passes."""


@dataclass
class _Graph:
    """One captured pass: its bucket, the device tensors it reads (a batch is copied into them) and the
    one it writes the sentence vectors to."""

    rows: int
    tokens: int
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, Any]  # device tensors, and the features' constants (e.g. modality "text")
    output: torch.Tensor


class GraphedEncoder:
    """``encode(texts)`` gives what ``encode_batch`` gives, by replaying the graph of the batch's bucket;
    a batch past the largest captured cell runs eagerly.

    Every cell is captured at start: a capture costs tens of milliseconds, which the first request of a new
    shape would pay. A replay of a real batch is then checked against the eager pass. Replays run one at a
    time, under a lock: the graphs share one memory pool and each its input tensors. The batcher's other
    thread tokenizes meanwhile, the overlap its ``batches_in_flight`` is for.
    """

    def __init__(self, model: SentenceTransformer, max_texts: int, max_cell_tokens: int) -> None:
        import torch

        self.model = model
        self.device = model.device
        self.row_sizes = buckets(max_texts)
        self.token_sizes = buckets(max_tokens(model), SHORTEST_TOKENS)
        self.pad_id = int(getattr(model.tokenizer, "pad_token_id", None) or 0)
        self.replays = 0  # passes served from a graph (the GPU tests read it)
        self._lock = threading.Lock()
        template = tokenized(model, ["a text the graphs are captured with"])
        self.layout = FeatureLayout.of(template)  # a replay takes its constants as captured
        pool = torch.cuda.graph_pool_handle()
        started, reserved = time.perf_counter(), torch.cuda.memory_reserved(self.device)
        self._graphs = {
            (rows, tokens): self._capture(padded(template, rows, tokens, self.pad_id), pool)
            for rows, tokens in cells(self.row_sizes, self.token_sizes, max_cell_tokens)
        }
        self._check_against_eager()
        log.info(
            "embedding model: %d CUDA graphs captured in %.1f s, %.0f MiB (texts %s x tokens %s, cells of "
            "<= %d tokens)", len(self._graphs), time.perf_counter() - started,
            (torch.cuda.memory_reserved(self.device) - reserved) / 2**20, self.row_sizes, self.token_sizes,
            max_cell_tokens,
        )  # fmt: skip

    @property
    def graph_count(self) -> int:
        """Cells captured (the service's ``/info`` reports it)."""
        return len(self._graphs)

    def _capture(self, features: dict[str, Any], pool: Any) -> _Graph:  # pool: a graph_pool_handle
        import torch

        rows, tokens = features["input_ids"].shape
        inputs = on_device(features, self.device)
        # the model's device, not the current one: torch.cuda.graph captures on a stream of the current device
        with torch.cuda.device(self.device), torch.inference_mode():
            side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up off the graph: lazy initialisation is not capturable
                for _ in range(2):
                    self.model(dict(inputs))
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                output = self.model(dict(inputs))["sentence_embedding"]
        return _Graph(rows, tokens, graph, inputs, output)

    def _check_against_eager(self) -> None:
        """A graph that captured nothing (kernels sent to another device's stream) replays stale vectors
        without an error: one real batch is compared before any request is served from graphs."""
        texts = ["graphs are checked against the eager pass", "short", "a third text"][: self.row_sizes[-1]]
        replayed = self.encode(texts)
        if self.replays != 1:
            raise NotCapturable(
                f"no captured cell holds {len(texts)} short texts (cuda_graph_max_cell_tokens)"
            )
        difference = float(abs(replayed - forward_pass(self.model, tokenized(self.model, texts))).max())
        if not difference <= CHECK_ATOL:
            raise NotCapturable(f"a replay differs from the eager pass by {difference:.2g}")
        self.replays = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        """One pass over ``texts``: their float32 vectors, in order."""
        import torch

        features = tokenized(self.model, texts)
        texts_count, tokens = features["input_ids"].shape
        rows, width = bucket_for(texts_count, self.row_sizes), bucket_for(tokens, self.token_sizes)
        graph = self._graphs.get((rows or 0, width or 0))
        if graph is None or not self.layout.matches(features):
            return forward_pass(self.model, features)
        grown = padded(features, graph.rows, graph.tokens, self.pad_id)
        with self._lock, torch.cuda.device(self.device), torch.inference_mode():
            for name, static in graph.inputs.items():
                if isinstance(static, torch.Tensor):
                    static.copy_(grown[name])
            graph.graph.replay()
            vectors: np.ndarray = graph.output[:texts_count].float().cpu().numpy()
            self.replays += 1
        return vectors


def graphed_or_eager(
    model: SentenceTransformer, max_texts: int, max_cell_tokens: int
) -> GraphedEncoder | None:
    """A GraphedEncoder, or None (the reason logged) for a model whose pass cannot be captured."""
    try:
        return GraphedEncoder(model, max_texts, max_cell_tokens)
    except (
        RuntimeError
    ) as exc:  # NotCapturable, UnsupportedFeatures; a host sync inside the forward; out of memory
        import torch

        torch.cuda.empty_cache()  # what a partial capture reserved
        log.warning("embedding model: CUDA graphs off, eager passes (%s)", exc)
        return None
