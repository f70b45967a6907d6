"""Token counting (OpenAI ``usage``) while the model encodes on another thread: neither may break the
other (a shared fast tokenizer's padding state did, under concurrent clients)."""

from __future__ import annotations

import threading
import time

import pytest

from services.embedding.model import TokenCounter, load_sentence_model

TEXTS = [("word " * n).strip() for n in (1, 7, 3, 19, 2, 11, 5, 23)]


@pytest.fixture(scope="module")
def model():  # the real packaged MiniLM (sentence-transformers), loaded once
    return load_sentence_model("all-MiniLM-L6-v2")


def test_counting_while_the_model_encodes_does_not_break_either(model) -> None:
    counter = TokenCounter(model)
    expected = counter(TEXTS)
    errors: list[BaseException] = []
    stop = time.monotonic() + 3

    def encode_loop() -> None:
        while time.monotonic() < stop:
            try:
                model.encode(TEXTS, batch_size=len(TEXTS))
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
