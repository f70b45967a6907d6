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
