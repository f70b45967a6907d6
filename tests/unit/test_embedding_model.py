"""services/embedding/model.py with the real packaged MiniLM: one forward pass gives what
sentence-transformers' ``encode`` gives; token counting (OpenAI ``usage``) while the model encodes on
another thread breaks neither (a shared fast tokenizer's padding state did, under concurrent clients);
length groups; the feature layout fixed-shape passes (CUDA graphs, ONNX) are made from."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from services.embedding.model import FeatureLayout, TokenCounter, UnsupportedFeatures, encode_batch, tokenized

TEXTS = [("word " * n).strip() for n in (1, 7, 3, 19, 2, 11, 5, 23)]


def test_one_forward_pass_gives_the_vectors_encode_gives(minilm) -> None:
    texts = [*TEXTS, "Ünïcödé, emoji 🙂 and CJK 漢字", "x" * 5000]  # mixed lengths, one past truncation
    expected = minilm.encode(texts, batch_size=len(texts), convert_to_numpy=True)
    got = encode_batch(minilm, texts)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(encode_batch(minilm, texts[:1]), expected[:1], rtol=0, atol=1e-5)  # alone


def test_counting_while_the_model_encodes_does_not_break_either(minilm) -> None:
    counter = TokenCounter(minilm)
    expected = counter(TEXTS)
    errors: list[BaseException] = []
    stop = time.monotonic() + 3

    def encode_loop() -> None:
        while time.monotonic() < stop:
            try:
                minilm.encode(TEXTS, batch_size=len(TEXTS))
            except Exception as exc:  # the failure this test is about
                errors.append(exc)
                return

    worker = threading.Thread(target=encode_loop)
    worker.start()
    counts = []
    while time.monotonic() < stop:
        counts.append(counter(TEXTS[::-1]))
    worker.join()
    assert errors == []
    assert set(counts) == {expected}
    assert expected == sum(n + 2 for n in (1, 7, 3, 19, 2, 11, 5, 23))  # words plus [CLS] and [SEP]


def test_batches_in_flight_on_threads_get_their_own_vectors(minilm) -> None:
    """Two threads encoding at once with one model (the batcher's batches_in_flight=2), batches of
    different lengths: every vector is what encode gives, and the tokenizer never fails."""
    batches = [TEXTS, TEXTS[::-1], TEXTS[:3], TEXTS[2:]]
    expected = [minilm.encode(b, batch_size=len(b), convert_to_numpy=True) for b in batches]
    errors: list[BaseException] = []
    stop = time.monotonic() + 3

    def encode_loop(offset: int) -> None:
        i = offset
        while time.monotonic() < stop:
            b = i % len(batches)
            try:
                np.testing.assert_allclose(encode_batch(minilm, batches[b]), expected[b], rtol=0, atol=1e-5)
            except BaseException as exc:  # a wrong vector or a tokenizer failure: what this test is about
                errors.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=encode_loop, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_length_groups_pad_little_and_cover_every_text_once() -> None:
    """A batch is split into passes of similar lengths, each within the padded-characters budget."""
    from services.embedding.model import length_groups

    texts = ["a" * n for n in (300, 5, 40, 6, 280, 7, 45, 300)]
    groups = length_groups(texts, max_padded_chars=600, longest_chars=1024)
    assert sorted(i for g in groups for i in g) == list(range(len(texts)))
    for group in groups:
        widest = max(len(texts[i]) for i in group)
        assert len(group) == 1 or len(group) * widest <= 600
    assert [len(texts[i]) for i in groups[0]] == [5, 6, 7, 40, 45]  # shortest together, not padded to 300
    assert length_groups(texts, None, 1024) == [list(range(len(texts)))]  # one pass, callers' order
    assert length_groups(["a" * 5000], 100, longest_chars=1024) == [[0]]  # a text longer than the budget
    assert length_groups(["b" * 5000] * 3, 3 * 1024, longest_chars=1024) == [[0, 1, 2]]  # cut where truncated


def test_threads_wait_passively_only_beside_a_cpu_engine() -> None:
    from services.embedding.model import shares_cores_with_engine

    assert shares_cores_with_engine("file:///tmp/llm.sock", gpus=0)  # bentoml serve of the Bento, CPU host
    assert shares_cores_with_engine("file:///tmp/llm.sock", gpus=None)  # no NVML: no GPU either
    assert not shares_cores_with_engine("file:///tmp/llm.sock", gpus=1)  # the engine is on the GPU
    assert not shares_cores_with_engine(None, gpus=0)  # the embedding service served without the LLM
    assert not shares_cores_with_engine("http://llm:3000", gpus=0)  # the LLM on another pod


def test_a_fixed_shape_pass_takes_only_features_of_its_sample_s_layout(minilm) -> None:
    layout = FeatureLayout.of(tokenized(minilm, ["a sample"]))
    assert set(layout.tensors) == {"input_ids", "attention_mask", "token_type_ids"}
    assert layout.matches(tokenized(minilm, ["another text", "of other lengths entirely"]))
    unlike = tokenized(minilm, ["a text"])
    assert not layout.matches({k: v for k, v in unlike.items() if k != "token_type_ids"})
    if layout.constants:  # sentence-transformers 6 adds modality "text"
        assert not layout.matches(unlike | dict.fromkeys(layout.constants, "image"))
    with pytest.raises(
        UnsupportedFeatures, match=r"features other than texts x tokens tensors: \['pixels'\]"
    ):
        FeatureLayout.of({"pixels": [0.0]})
