"""services/embedding/onnx_pass.py: the real MiniLM exported to ONNX and run by ONNX Runtime gives the
vectors of the torch pass, for batch shapes the export never saw."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from services.embedding.model import encode_batch
from services.embedding.onnx_pass import OnnxEncoder, onnx_or_torch


@pytest.fixture(scope="module")
def onnx_minilm(minilm) -> OnnxEncoder:
    return OnnxEncoder(minilm)


@pytest.mark.parametrize(
    "texts",
    [
        ["one text"],
        ["short", "a somewhat longer sentence about sockets and ports", "word " * 400],  # one truncated
        [f"text number {i} " + "padding words " * (i % 9) for i in range(64)],
    ],
    ids=["1", "3-mixed-truncated", "64"],
)
def test_onnx_runtime_gives_the_torch_vectors(minilm, onnx_minilm: OnnxEncoder, texts: list[str]) -> None:
    np.testing.assert_allclose(onnx_minilm.encode(texts), encode_batch(minilm, texts), rtol=0, atol=1e-5)


def test_one_session_serves_threads_at_once(minilm, onnx_minilm: OnnxEncoder) -> None:
    """The batcher runs ``batches_in_flight`` passes on threads of its own."""
    from concurrent.futures import ThreadPoolExecutor

    batches = [[f"thread {i} text {j}" * (1 + i) for j in range(i + 1)] for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(onnx_minilm.encode, batches))
    for texts, vectors in zip(batches, answers, strict=True):
        np.testing.assert_allclose(vectors, encode_batch(minilm, texts), rtol=0, atol=1e-5)


def test_features_unlike_the_trace_s_run_in_torch(
    minilm, onnx_minilm: OnnxEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Features the trace was not taken with (another key set, another constant) must not reach the session."""
    from services.embedding.model import tokenized

    calls: list[object] = []
    session = onnx_minilm.session
    monkeypatch.setattr(onnx_minilm, "session", type("Counted", (), {
        "run": staticmethod(lambda *args: calls.append(args) or session.run(*args)),
    })())  # fmt: skip
    unlike = tokenized(minilm, ["a text"])
    del unlike["token_type_ids"]  # BERT's default is the zeros the tokenizer gives: the same vectors
    np.testing.assert_allclose(onnx_minilm.run(unlike), encode_batch(minilm, ["a text"]), rtol=0, atol=1e-6)
    assert calls == []
    onnx_minilm.run(tokenized(minilm, ["a text"]))
    assert len(calls) == 1


def test_a_trace_unlike_torch_is_refused_at_start(
    minilm, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A trace that computes something else cannot be made on purpose with a real model: the torch side of
    the start check is shifted by 1e-3 (ten times the tolerance) instead."""
    from services.embedding import onnx_pass

    real = onnx_pass.forward_pass
    monkeypatch.setattr(onnx_pass, "forward_pass", lambda model, features: real(model, features) + 1e-3)
    with caplog.at_level(logging.WARNING):
        assert onnx_or_torch(minilm, spin=False, required=False) is None
    assert (
        "ONNX Runtime off, torch passes (ONNX Runtime differs from torch by 0.001 on 1 texts)" in caplog.text
    )
    with pytest.raises(RuntimeError, match="INFSTACK_EMBEDDING__RUNTIME=onnx: ONNX Runtime differs"):
        onnx_or_torch(minilm, spin=False, required=True)


def test_a_model_that_cannot_be_exported_keeps_torch_or_stops_when_onnx_was_asked_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A model whose features are not tensors (here: no model at all) cannot be exported: the default
    falls back to torch with the reason logged; INFSTACK_EMBEDDING__RUNTIME=onnx makes it an error."""

    class NotAModel:
        def tokenize(self, texts: list[str]) -> dict[str, object]:
            return {"pixels": [0.0] * len(texts)}

    with caplog.at_level(logging.WARNING):
        assert onnx_or_torch(NotAModel(), spin=True, required=False) is None  # type: ignore[arg-type]
    assert (
        "ONNX Runtime off, torch passes (features other than texts x tokens tensors: ['pixels'])"
        in caplog.text
    )
    with pytest.raises(RuntimeError, match=r"INFSTACK_EMBEDDING__RUNTIME=onnx: features other than"):
        onnx_or_torch(NotAModel(), spin=True, required=True)  # type: ignore[arg-type]
