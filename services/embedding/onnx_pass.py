"""The embedding model's forward pass through ONNX Runtime, on the CPU.

Why: on the 2-core CPU a one-text MiniLM pass in torch took 10.9 ms, mostly Python and operator dispatch
around little arithmetic; the same graph in ONNX Runtime took 4.0 ms (2 texts 19.1 -> 10.6 ms, 4 texts
27.4 -> 20.8 ms; from 8 texts on the arithmetic bounds both, 1.0-1.2x), with vectors equal to 2e-7
(benchmarks/results/embedding_passes_cpu_dec06onnx.json). Text classification at one and eight clients was
bound by that pass there (benchmarks/results/README.md).

The model is exported at start (``torch.onnx.export``'s tracing exporter, a second or two), from the
loaded sentence-transformers pipeline itself: pooling and any normalisation are inside the graph, and
no file is written. The trace is checked against torch on batches of other shapes before it serves.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from typing import TYPE_CHECKING, Any

from services.embedding.model import FeatureLayout, forward_pass, max_tokens, tokenized

if TYPE_CHECKING:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
# ONNX Runtime vs torch at start, over the largest vector entry (at least 1: normalised vectors are
# compared absolutely): MiniLM agreed to ~2e-7 for 1..64 texts (tests/unit)
CHECK_TOLERANCE = 1e-4
OPSET = 17
EXPORT_TEXTS = ["an export sample", "a longer export sample, so that texts and tokens both vary"]


def check_batches(longest_tokens: int) -> list[list[str]]:
    """Batches of shapes the export did not see: one text; equal lengths (no padding); mixed lengths up
    to the model's truncation (a length-dependent branch the trace fixed would show there)."""
    return [
        ["the ONNX pass is checked against torch before it serves"],
        ["four texts of one length"] * 4,
        ["short", "a third shape of batch for the check", "word " * 2 * longest_tokens],
    ]


class NotExportable(RuntimeError):
    """The model's pass cannot be served from ONNX Runtime: the caller keeps torch passes."""


def _pipeline(model: SentenceTransformer, layout: FeatureLayout) -> torch.nn.Module:
    """The model as a module of positional tensors (what the exporter traces), constants put back."""
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = {**dict(zip(layout.tensors, tensors, strict=True)), **layout.constants}
            output: torch.Tensor = self.model(features)["sentence_embedding"]
            return output

    return Pipeline().eval()


def exported(model: SentenceTransformer) -> tuple[bytes, FeatureLayout, int]:
    """The model's pass as ONNX bytes, the features it was traced from, and how many shape-dependent
    Python branches the tracer fixed (its TracerWarnings; the start check covers them)."""
    import torch

    sample = tokenized(model, EXPORT_TEXTS)
    layout = FeatureLayout.of(sample)
    names = list(layout.tensors)
    if "attention_mask" in names and bool(sample["attention_mask"].all()):
        # transformers drops an all-ones mask in Python (SDPA), though not while tracing in the versions
        # seen; a trace taken without padding could ignore the padding of every later batch.
        raise NotExportable("the export sample has no padding")
    axes = {name: {0: "texts", 1: "tokens"} for name in names}
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(
            _pipeline(model, layout), tuple(sample[name] for name in names), buffer,  # type: ignore[arg-type]  # the tracing exporter writes to a file object too
            input_names=names, output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "texts"}}, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    fixed = {str(w.message) for w in caught if w.category.__name__ == "TracerWarning"}
    return buffer.getvalue(), layout, len(fixed)


class OnnxEncoder:
    """``encode(texts)`` gives what ``encode_batch`` gives, from an ONNX Runtime session.

    The session's intra-op threads are the worker's torch threads (BentoML sizes those from the service's
    CPU resources). ``spin``: whether idle threads spin for work, ONNX Runtime's default; off
    beside a CPU vLLM engine, for the reason ``load_sentence_model`` sets passive OpenMP waits there.
    A session runs calls from several threads at once (the batcher's ``batches_in_flight``).
    """

    def __init__(self, model: SentenceTransformer, spin: bool = True) -> None:
        import onnxruntime
        import torch

        self.model = model
        threads = torch.get_num_threads()
        started = time.perf_counter()
        graph, self.layout, fixed_branches = exported(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.inputs = [item.name for item in self.session.get_inputs()]  # the exporter drops unused ones
        self._check_against_torch()
        log.info(
            "embedding model: ONNX Runtime %s, exported and checked in %.1f s (%d threads, spinning %s; "
            "shape-dependent branches the trace fixed: %d, checked)", onnxruntime.__version__,
            time.perf_counter() - started, threads, "on" if spin else "off", fixed_branches,
        )  # fmt: skip

    def _check_against_torch(self) -> None:
        """A trace keeps the branches its sample took: batches of other shapes are compared first."""
        for texts in check_batches(max_tokens(self.model)):
            features = tokenized(self.model, texts)
            reference = forward_pass(self.model, features)
            difference = float(abs(self.run(features) - reference).max()) / max(
                1.0, float(abs(reference).max())
            )
            if not difference <= CHECK_TOLERANCE:
                raise NotExportable(
                    f"ONNX Runtime differs from torch by {difference:.2g} on {len(texts)} texts"
                )

    def run(self, features: dict[str, Any]) -> np.ndarray:
        """The float32 vectors of one pass over tokenized ``features``."""
        if not self.layout.matches(features):
            return forward_pass(self.model, features)  # features the trace was not taken with
        feeds = {name: features[name].numpy() for name in self.inputs}
        vectors: np.ndarray = self.session.run(None, feeds)[0]
        return vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        """One pass over ``texts``: their float32 vectors, in order."""
        return self.run(tokenized(self.model, texts))


def onnx_or_torch(model: SentenceTransformer, spin: bool, required: bool) -> OnnxEncoder | None:
    """An OnnxEncoder, or None (the reason logged) where the model cannot be exported or checked;
    ``required`` (INFSTACK_EMBEDDING__RUNTIME=onnx set) raises instead."""
    try:
        return OnnxEncoder(model, spin)
    except Exception as exc:  # NotExportable, UnsupportedFeatures; the exporter's errors; onnxruntime missing
        if required:
            raise RuntimeError(f"INFSTACK_EMBEDDING__RUNTIME=onnx: {exc}") from exc
        log.warning("embedding model: ONNX Runtime off, torch passes (%s)", exc)
        return None
