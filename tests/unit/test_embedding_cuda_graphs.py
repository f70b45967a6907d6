"""services/embedding/cuda_graphs.py on the CPU: the buckets graphs are captured for, and the padding a
replay adds, which must not change a vector (the real MiniLM, an eager pass over the padded features).
The capture and replay themselves need a GPU: tests/gpu/test_embedding_graphs.py."""

from __future__ import annotations

import numpy as np
import pytest

from services.embedding.cuda_graphs import bucket_for, buckets, cells, padded
from services.embedding.model import encode_batch, forward_pass, tokenized


def test_buckets_double_up_to_the_largest_which_is_always_one() -> None:
    assert buckets(64) == (1, 2, 4, 8, 16, 32, 64)
    assert buckets(256, 16) == (16, 32, 64, 128, 256)
    assert buckets(100) == (1, 2, 4, 8, 16, 32, 64, 100)  # a max_batch_size that is no power of two
    assert buckets(1) == (1,)
    assert [bucket_for(n, buckets(64)) for n in (1, 3, 4, 33, 64, 65)] == [1, 4, 4, 64, 64, None]


def test_cells_are_captured_largest_first_and_none_past_the_budget() -> None:
    assert cells((1, 2, 4), (16, 32), 64) == [(4, 16), (2, 32), (2, 16), (1, 32), (1, 16)]  # 4 x 32 > 64
    assert len(cells(buckets(64), buckets(256, 16), 64 * 256)) == 35  # the defaults: every cell


def test_padding_to_a_bucket_changes_no_vector(minilm) -> None:
    texts = ["short", "a somewhat longer sentence about sockets and ports", "word " * 400]  # one truncated
    features = tokenized(minilm, texts)
    rows, tokens = features["input_ids"].shape
    grown = padded(features, 4, 512, pad_id=minilm.tokenizer.pad_token_id)
    assert grown["input_ids"].shape == (4, 512) and rows == 3 and tokens == 256
    assert grown["attention_mask"][3].tolist() == [1] + [0] * 511  # an added row attends to one position
    assert grown["attention_mask"][0, tokens:].sum() == 0  # added tokens are padding
    np.testing.assert_allclose(
        forward_pass(minilm, grown)[:rows], encode_batch(minilm, texts), rtol=0, atol=1e-5
    )


def test_a_model_that_cannot_be_captured_runs_eagerly_with_the_reason_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A capture error (e.g. a host sync inside a model's forward) cannot be caused on the CPU: the
    encoder's constructor is replaced by one raising what torch raises there."""
    from services.embedding import cuda_graphs

    def fails(*_: object) -> None:
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda_graphs, "GraphedEncoder", fails)
    assert cuda_graphs.graphed_or_eager(object(), 64, 64 * 256) is None  # type: ignore[arg-type]
    assert "CUDA graphs off, eager passes (operation not permitted when stream is capturing)" in caplog.text
